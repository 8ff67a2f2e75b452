"""A remote fan-out's base state goes to each host once, and each branch carries only its
own part (tead/executors/remote/base.py), against real sshds: the results are those of
thread branches, whatever the branches do to the state, and the bytes sent show it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tead.executors.registry import Executors
from tead.executors.remote.executor import RemoteExecutor
from tests.executors.sshd import SshLab
from tests.executors.test_remote import fan_out, run, write

BRANCH = """\
item = state['item']
n = item['n']
if n == 0:
    state['big']['words'].append('changed in place')   # a base value mutated
elif n == 1:
    del state['note']                                  # a base key dropped
elif n == 2:
    return {'added': [n, n]}                           # a new key
elif n == 3:
    item['seen'] = True                                # its item (a base list's entry)
    return {'mine': item}
elif n == 4:
    len(state['big']['words'])                         # read only
elif n == 5:
    raise ValueError('branch 5 fails')
return {'same_item': state['item'] is state['items'][n]}
"""


#: every branch's whole final state (its item, the base's values), as the fan-in sees it
FULL_RESULTS = (
    "return {'results': [{'ok': r.success, 'error': r.error, 'state': r.state}"
    " for r in parallel_results]}"
)


def _workflow(remote: dict[str, Any], size: int) -> dict[str, Any]:
    data = fan_out(remote, BRANCH, FULL_RESULTS)
    data["initial_state"] = {"items": [{"n": n} for n in range(8)], "note": "a note"}
    # made by a node: in the file, it would travel in the workflow's bundle too
    data["nodes"][0]["run"] = f"return {{'big': {{'words': ['w' * 100] * {size // 100}}}}}"
    data["edges"][1]["for_each"] = "state['items']"
    return data


def _final(path: Path, strategy: str, executors: Executors) -> dict[str, Any]:
    text = path.read_text().replace("strategy: remote", f"strategy: {strategy}")
    other = path.with_name(f"{strategy}.yaml")
    other.write_text(text)
    return run(other, executors)


def test_branches_over_a_shared_base_give_the_results_of_thread_branches(
    lab: SshLab, tmp_path: Path
) -> None:
    """Mutating a base value, dropping or adding a key, changing its item, reading only,
    failing: each branch's final state is what a thread branch's is."""
    path = write(tmp_path, _workflow(lab.remote(tmp_path / "jobs"), 10_000))
    with Executors() as executors:
        remote = _final(path, "remote", executors)
        thread = _final(path, "thread", executors)
    assert remote == thread
    results = remote["results"]
    assert results[0]["state"]["big"]["words"][-1] == "changed in place"
    assert "note" not in results[1]["state"] and results[2]["state"]["added"] == [2, 2]
    assert results[3]["state"]["mine"] == {"n": 3, "seen": True}
    assert [r["state"]["item"] for r in results if r["ok"]] == [
        {"n": n, **({"seen": True} if n == 3 else {})} for n in range(8) if n != 5
    ]
    assert results[6]["state"]["same_item"] is True
    assert results[5]["error"] == "branch 5 fails"


def test_a_big_base_is_sent_once_per_host_not_once_per_branch(lab: SshLab, tmp_path: Path) -> None:
    """200 branches over a 1 MB state (each reads it, none its item) send about 1 MB per
    host, not 200 MB, and their final states are whole; the same fan-out with sharing
    off sends the state with every branch."""
    size = 1_000_000
    data = _workflow(lab.remote(tmp_path / "jobs"), size)
    data["initial_state"]["items"] = [{"n": 10 + n} for n in range(200)]
    data["nodes"][1]["run"] = "return {'n': len(state['big']['words'])}"  # its item unread
    data["nodes"][2]["run"] = (
        "return {'count': len(parallel_results),"
        " 'items': [r.state['item'] for r in parallel_results] == state['items']}"
    )
    path = write(tmp_path, data)
    sent = {}
    for share in (True, False):
        executors = Executors()
        executors.register("remote", lambda deps, share=share: RemoteExecutor(share_base=share))
        with executors:
            final = run(path, executors)
            assert final["count"] == 200
            assert final["items"] is True  # each branch's final state has its item
            hosts = executors.get("remote")
            assert isinstance(hosts, RemoteExecutor)
            sent[share] = sum(h.bytes_sent for h in hosts.hosts())
    assert sent[True] < 3 * size * 1.1 + 200 * 1_000, sent
    assert sent[False] > 200 * size, sent
