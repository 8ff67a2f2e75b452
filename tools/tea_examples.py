"""How many of The Edge Agent's (TEA's) example workflows load and run in tead unchanged.

    python tools/tea_examples.py PATH/TO/the_edge_agent [--timeout 60]

Reads every `examples/**/*.y[a]ml` of a TEA checkout. A workflow "uses only the shared
graph format" unless it calls a TEA built-in action (`uses:`/`action:` other than
`module:function`, `steps:` with `uses:`), uses another language (`language: lua`/`prolog`,
`run: {type: ...}`), or a TEA-only service (`variables`, `imports`, `secrets`, settings
other than `parallel`, streams). Each shared-format file is copied with its folder into a
temporary folder and checked with `tead validate`, then run with `tead run` there (this
runs the example's own code: read the examples first). Prints one line per file and the
totals.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

_ACTIONS = ("uses", "action", "subgraph", "script", "prompt")


def tea_only(data: dict[str, Any]) -> bool:
    """Whether the workflow uses a TEA feature outside the shared graph format."""
    if any(key in data for key in ("variables", "imports", "secrets")):
        return True
    settings = data.get("settings")
    if isinstance(settings, dict) and (
        any(key != "parallel" for key in settings) or "streams" in str(settings.get("parallel"))
    ):
        return True
    return _uses_tea_only(data.get("nodes"))


def _uses_tea_only(value: object) -> bool:
    if isinstance(value, list):
        return any(_uses_tea_only(item) for item in value)
    if not isinstance(value, dict):
        return False
    uses = value.get("uses")
    if isinstance(uses, str) and ":" not in uses:
        return True
    if any(key in value for key in _ACTIONS if key != "uses") or "streams" in value:
        return True
    if value.get("language") not in (None, "python") or isinstance(value.get("run"), dict):
        return True
    return any(_uses_tea_only(item) for item in value.values())


def check(path: Path, tead: list[str], timeout_s: float) -> tuple[str, str]:
    """(status, detail) of one shared-format file: load-fails, runs, node-fails, timeout."""
    with tempfile.TemporaryDirectory(prefix="tea-example-") as work:
        shutil.copytree(path.parent, work, dirs_exist_ok=True)
        target = str(Path(work) / path.name)
        loaded = subprocess.run(
            [*tead, "validate", target], capture_output=True, text=True, cwd=work, check=False
        )
        if loaded.returncode != 0:
            first = (loaded.stderr.strip().splitlines() or [""])[0]
            return "load-fails", first.replace(work + "/", "")
        try:
            ran = subprocess.run(
                [*tead, "run", "-q", target],
                capture_output=True,
                text=True,
                cwd=work,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "timeout", ""
        if ran.returncode == 0:
            return "runs", ""
        return "node-fails", (ran.stderr.strip().splitlines() or [""])[-1][:160]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("checkout", type=Path, help="a checkout of The Edge Agent")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    args = parser.parse_args()
    tead = [sys.executable, "-m", "tead"]
    counts: collections.Counter[str] = collections.Counter()
    for path in sorted((args.checkout / "examples").rglob("*.y*ml")):
        name = path.relative_to(args.checkout)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            status, detail = "not-yaml", ""
        else:
            if not isinstance(data, dict) or "nodes" not in data:
                status, detail = "not-a-workflow", ""
            elif tea_only(data):
                status, detail = "tea-only", ""
            else:
                status, detail = check(path, tead, args.timeout)
        counts[status] += 1
        print(f"{status:15} {name} {detail}".rstrip())
    shared = sum(counts[k] for k in ("runs", "node-fails", "load-fails", "timeout"))
    print(dict(counts))
    print(
        f"shared graph format: {shared}; load unchanged: {shared - counts['load-fails']}; "
        f"run to the end unchanged: {counts['runs']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
