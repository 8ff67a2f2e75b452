"""tools/check_imports.py on small packages written for each rule, and on tead itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKER = ROOT / "tools" / "check_imports.py"


def write_package(base: Path, files: dict[str, str]) -> Path:
    """A package `tead` under `base` holding `files` (relative path -> source); every
    folder gets an empty __init__.py unless given."""
    package = base / "tead"
    for relative, source in {"__init__.py": "", **files}.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(package).parents:
            init = package / folder / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(textwrap.dedent(source))
    return package


def check(package: Path) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, str(CHECKER), str(package)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.stderr == ""
    return done.returncode, done.stdout.splitlines()


CLEAN = {
    "errors.py": "class TeadError(Exception): ...\n",
    "spec/models.py": "from tead.errors import TeadError\n",
    "spec/schedule.py": """\
        from typing import TYPE_CHECKING

        from tead.spec import models
        from .models import TeadError

        if TYPE_CHECKING:
            from tead.errors import TeadError as Base
        """,
    "graph/compiled.py": """\
        try:
            import json
        except ImportError:
            json = None
        from tead.spec.models import TeadError
        """,
    "daemon/app.py": "from tead.daemon.api import build\n",
    "daemon/api.py": """\
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from tead.daemon.app import Daemon  # an annotation: no cycle

        def build(daemon: "Daemon") -> None: ...
        """,
    "cli/main.py": "from tead.daemon.app import build\nfrom tead.graph import compiled\n",
    "__main__.py": "from tead.cli.main import build\n",
}


def test_a_clean_package_passes(tmp_path):
    """Downward imports, relative ones, and an annotation-only import back: no problem."""
    assert check(write_package(tmp_path, CLEAN)) == (0, [])


def test_a_cycle_is_printed_as_a_path_back_to_its_start(tmp_path):
    package = write_package(
        tmp_path,
        {
            **CLEAN,
            "daemon/api.py": "import tead.daemon.app\n",
            "daemon/runs.py": "from tead.daemon import store\n",
            "daemon/store.py": "from .runs import x\n",
        },
    )
    code, lines = check(package)
    assert code == 1
    assert lines == [
        "import cycle: tead.daemon.api -> tead.daemon.app -> tead.daemon.api",
        "import cycle: tead.daemon.runs -> tead.daemon.store -> tead.daemon.runs",
    ]


def test_an_import_inside_a_function_or_method_is_reported_with_its_line(tmp_path):
    package = write_package(
        tmp_path,
        {
            **CLEAN,
            "spec/models.py": """\
                def check(expr):
                    from tead.spec.cron import check_cron
                    return check_cron(expr)

                class Model:
                    async def load(self):
                        if self:
                            import json
                """,
            "spec/cron.py": "def check_cron(expr): ...\n",
        },
    )
    code, lines = check(package)
    assert (code, lines) == (
        1,
        [
            "tead/spec/models.py:2: import inside a function",
            "tead/spec/models.py:8: import inside a function",
        ],
    )


def test_import_module_and_dunder_import_of_a_package_module_count_as_imports(tmp_path):
    """A literal `importlib.import_module("tead....")` or `__import__` cannot dodge the
    rules: in a function or lambda it is an inner import; at module level it may go up a
    layer or close a cycle. A name known only at run time is not checked."""
    package = write_package(
        tmp_path,
        {
            **CLEAN,
            "spec/models.py": """\
                import importlib

                def load():
                    return importlib.import_module("tead.spec.cron")

                later = lambda: __import__("tead.spec.cron")
                def user(name):
                    return importlib.import_module(name)
                """,
            "spec/cron.py": "import importlib\nimportlib.import_module('tead.daemon.app')\n",
            "graph/compiled.py": "from tead.graph import nodes\n",
            "graph/nodes.py": "__import__('tead.graph.compiled')\n",
        },
    )
    code, lines = check(package)
    assert (code, lines) == (
        1,
        [
            "tead/spec/cron.py:2: tead.spec.cron imports higher layer tead.daemon.app",
            "tead/spec/models.py:4: import inside a function",
            "tead/spec/models.py:6: import inside a function",
            "import cycle: tead.graph.compiled -> tead.graph.nodes -> tead.graph.compiled",
        ],
    )


def test_an_upward_import_is_reported_even_for_annotations(tmp_path):
    """A TYPE_CHECKING import is no cycle, but it must not point to a higher layer."""
    package = write_package(
        tmp_path,
        {
            **CLEAN,
            "spec/models.py": """\
                from typing import TYPE_CHECKING

                from tead.executors.thread import run
                from tead import errors

                if TYPE_CHECKING:
                    from tead.daemon.app import Daemon
                """,
            "daemon/metrics.py": "from tead import __version__\n",
            "executors/thread.py": "def run(): ...\n",
        },
    )
    code, lines = check(package)
    assert code == 1
    assert lines == [
        "tead/daemon/metrics.py:1: tead.daemon.metrics imports higher layer tead",
        "tead/spec/models.py:3: tead.spec.models imports higher layer tead.executors.thread",
        "tead/spec/models.py:7: tead.spec.models an annotation import of higher layer"
        " tead.daemon.app",
    ]


def test_a_module_outside_the_layers_is_reported(tmp_path):
    package = write_package(tmp_path, {**CLEAN, "plugins/extra.py": ""})
    assert check(package) == (
        1,
        [
            "tead/plugins/__init__.py: tead.plugins is in no layer (see LAYERS)",
            "tead/plugins/extra.py: tead.plugins.extra is in no layer (see LAYERS)",
        ],
    )


@pytest.mark.parametrize(("lines", "reported"), [(400, False), (401, True)])
def test_a_module_over_400_lines_is_reported(tmp_path, lines, reported):
    package = write_package(tmp_path, {**CLEAN, "daemon/big.py": "x = 1\n" * lines})
    expected = ["tead/daemon/big.py: 401 lines (over 400)"] if reported else []
    assert check(package) == (1 if reported else 0, expected)


def test_tead_itself_keeps_the_rules():
    """The whole package: no cycle, no hidden import, no upward import, no big module."""
    assert check(ROOT / "tead") == (0, [])


def test_a_deferred_import_says_why_and_still_counts_for_cycles_and_layers(tmp_path):
    """`# deferred: <reason>` lets an import wait for the function that needs it (start-up
    cost), but a cycle or an upward import through it is still reported."""
    package = write_package(
        tmp_path,
        {
            **CLEAN,
            "cli/daemon.py": """\
                def serve():
                    from tead.daemon.app import build  # deferred: the web stack is slow
                    return build
                """,
            "spec/models.py": """\
                def check():
                    from tead.graph.compiled import x  # deferred: some reason
                def check2():
                    from tead.errors import TeadError  # deferred:
                """,
        },
    )
    code, lines = check(package)
    assert (code, lines) == (
        1,
        [
            "tead/spec/models.py:4: import inside a function",
            "tead/spec/models.py:2: tead.spec.models imports higher layer tead.graph.compiled",
            "import cycle: tead.graph.compiled -> tead.spec.models -> tead.graph.compiled",
        ],
    )
