"""A branch's lines kept to travel back with its result: bounded where asked."""

from __future__ import annotations

from tead.engine.linelist import LINE_COST, LineList


def test_without_a_bound_every_line_is_kept() -> None:
    lines = LineList()
    lines([(1.0, "a", "b[0]", "stdout", "x" * 10_000)] * 50)
    assert len(lines.take()) == 50
    assert lines.take() == []


def test_past_the_bound_the_rest_is_cut_and_one_line_says_so() -> None:
    """Lines count their characters plus LINE_COST each (lines written together count one
    by one); what does not fit is cut, one `log` line of the same node and branch says
    so, and nothing is kept afterwards."""
    bound = 3 * (10 + LINE_COST) + 5
    lines = LineList(max_chars=bound)
    lines([(1.0, "work", "work[2]", "stdout", "0123456789\n0123456789")])
    lines([(2.0, "work", "work[2]", "stderr", "abcdefghij\nabcdefghij")])
    lines([(3.0, "work", "work[2]", "stdout", "never kept")])
    kept = lines.take()
    assert [(t, n, b, s, text) for t, n, b, s, text in kept[:2]] == [
        (1.0, "work", "work[2]", "stdout", "0123456789\n0123456789"),
        (2.0, "work", "work[2]", "stderr", "abcdefghij"),
    ]
    _, node, branch, stream, text = kept[2]
    assert (node, branch, stream) == ("work", "work[2]", "log")
    assert text == (
        "WARNING tead: output cut here: a branch run elsewhere sends back at most "
        f"{bound} bytes of output"
    )
    assert len(kept) == 3
