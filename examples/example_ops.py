"""Node functions for examples/uses_module.yaml.

A `uses: example_ops:name` node calls `name(state, **with)`; the workflow file's folder
is importable, so this module needs no installing. A fan-in also gets
`parallel_results` as a keyword argument. Each function returns a dict to merge into
the state (or None).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def tokenize(state: dict[str, Any], *, lowercase: bool = False, strip: str = "") -> dict[str, Any]:
    """Split `state["text"]` into words, optionally lower-cased and stripped of characters."""
    words = [word.strip(strip) for word in state["text"].split()]
    if lowercase:
        words = [word.lower() for word in words]
    return {"words": [word for word in words if word]}


def count_word(state: dict[str, Any], *, word: str) -> dict[str, Any]:
    """Count how often `word` occurs in `state["words"]` (one branch per word)."""
    return {"word": word, "count": state["words"].count(word)}


def tally(
    state: dict[str, Any], *, parallel_results: Sequence[Any], label: str = "counts"
) -> dict[str, Any]:
    """Fan-in: gather the branches' counts under `label`, in branch order."""
    counts = {r.state["word"]: r.state["count"] for r in parallel_results if r.success}
    return {
        label: counts,
        "branches": [r.branch for r in parallel_results],
        "total_words": len(state["words"]),
    }


def resize(state: dict[str, Any], *, quality: int = 75) -> dict[str, Any]:
    """Pretend to resize `state["file"]` (used by examples/thumbnails.yaml; no pictures).

    A file whose name contains "broken" raises, like a corrupt picture would.
    """
    path = state["file"]
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if "broken" in stem:
        raise ValueError(f"cannot decode {path}")
    return {"thumb": f"thumbs/{stem}_{state['size']}q{quality}.jpg"}
