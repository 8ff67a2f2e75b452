"""The workflow folder's files, loaded and kept by content hash.

Every file change is treated the same way: "this path is dirty". The registry then reads
and hashes the file again, so atomic saves (temp + rename), editors that delete and
recreate, and half-written files all end in the file's real state. A file that fails to
load keeps its error (`file:line:col: message`) and takes nothing else down; two files
with the same `name` make the later one (in path order) an error.

Only regular files are read (see `tead.spec.files`); a symlink whose target lies outside the
folder is refused, and so (with `strict_permissions`) is a file or folder that others
could change.
"""

from __future__ import annotations

import gc
import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tead.errors import WorkflowError
from tead.graph.compiled import WorkflowGraph
from tead.graph.loader import MAX_FILE_BYTES, decode_workflow, load_workflow_text
from tead.spec.files import folder_problem, read_regular, unsafe_owner_or_mode

SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowEntry:
    path: Path
    name: str
    content_hash: str
    workflow: WorkflowGraph | None = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        return self.workflow is not None


@dataclass(slots=True)
class Changes:
    """What a refresh changed: workflow names loaded anew and names that went away."""

    loaded: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    errors: int = 0  # files that failed to load in this refresh

    def __bool__(self) -> bool:
        return bool(self.loaded or self.removed)


Loaded = dict[Path, WorkflowEntry | None]  # what `prepare` read (None: the file is gone)


def _spare_the_loop() -> None:
    """Keep garbage collections short while files load in a worker thread.

    A full collection walks every tracked object while holding the GIL: with a large
    folder loaded that stalled the event loop (and `/healthz`) for 250+ ms. What has just
    loaded lives as long as its workflow, so after a young collection the survivors are
    moved out of the collector's way (`gc.freeze`); a workflow replaced later may leave
    a frozen reference cycle behind (a few KB per edit).
    """
    gc.collect(1)
    gc.freeze()


def _subfolder_problem(target: Path, folder: Path) -> str | None:
    """Why a subfolder between a symlink's target and the workflow folder is unsafe."""
    for parent in target.parents:
        if parent == folder:
            return None
        try:
            reason = unsafe_owner_or_mode(parent.stat())
        except OSError as exc:
            return f"cannot check {parent}: {exc.strerror}"
        if reason:
            return f"the link's target folder {parent} {reason}"
    return None


def is_workflow_file(path: Path) -> bool:
    return path.suffix in SUFFIXES and not path.name.startswith(".")


class WorkflowRegistry:
    """The workflow files directly inside `folder`."""

    def __init__(self, folder: Path, *, strict_permissions: bool = True) -> None:
        self.folder = folder
        self.strict_permissions = strict_permissions  # see tead.spec.files
        # set: `uses:` modules are not imported here but by this (in a worker process),
        # which answers the file's load errors or None
        self.check_uses: Callable[[str, str], str | None] | None = None
        self._files: dict[Path, WorkflowEntry] = {}  # every file as it loaded
        self._names: dict[str, WorkflowEntry] = {}  # valid workflows by name
        self._shadowed: dict[Path, WorkflowEntry] = {}  # files whose name was taken

    def entries(self) -> list[WorkflowEntry]:
        """Every file, in path order, with its error if it has one."""
        return [self._shadowed.get(p, self._files[p]) for p in sorted(self._files)]

    def get(self, name: str) -> WorkflowEntry | None:
        """The valid workflow `name`, or the file named so that failed to load."""
        if name in self._names:
            return self._names[name]
        return next((e for e in self.entries() if e.name == name), None)

    def workflows(self) -> list[WorkflowEntry]:
        return [self._names[n] for n in sorted(self._names)]

    def scan(self) -> Changes:
        """Look at every file again (new, changed, gone)."""
        return self.commit(self.prepare(None))

    def refresh(self, paths: Iterable[Path]) -> Changes:
        """Re-read these paths (files that are gone are dropped)."""
        return self.commit(self.prepare(paths))

    def prepare(self, paths: Iterable[Path] | None) -> Loaded:
        """Read and load these paths (None: every file), changing nothing yet.

        This is the slow part (reading, parsing, importing `uses:` modules): the daemon
        runs it in a worker thread while the registry keeps answering, then `commit`s.
        Never run two at once, nor one during a `commit`.
        """
        if paths is None:
            paths = set(self._listing()) | set(self._files)
        refusal = folder_problem(self.folder) if self.strict_permissions else None
        real_folder = Path(os.path.realpath(self.folder))
        loaded: Loaded = {}
        for path in paths:
            if path.parent == self.folder and is_workflow_file(path):
                entry = loaded[path] = self._read(path, real_folder, refusal)
                if entry is not None and entry is not self._files.get(path):
                    _spare_the_loop()
        return loaded

    def commit(self, loaded: Loaded) -> Changes:
        """Take in what `prepare` read; what changed."""
        before = {name: entry.content_hash for name, entry in self._names.items()}
        errors = 0
        for path, entry in loaded.items():
            if entry is None:
                self._files.pop(path, None)
            elif self._files.get(path) != entry:
                self._files[path] = entry
                errors += entry.error is not None
        self._rebuild_names()
        after = {name: entry.content_hash for name, entry in self._names.items()}
        changes = Changes(errors=errors)
        changes.loaded = {n for n, digest in after.items() if before.get(n) != digest}
        changes.removed = set(before) - set(after)
        return changes

    def _listing(self) -> list[Path]:
        """Every entry named like a workflow file (what is not a file is listed as an error)."""
        try:
            return [p for p in self.folder.iterdir() if is_workflow_file(p)]
        except OSError:
            return []

    def _read(self, path: Path, real_folder: Path, refusal: str | None) -> WorkflowEntry | None:
        def failed(message: str, digest: str = "") -> WorkflowEntry:
            return WorkflowEntry(path=path, name=path.stem, content_hash=digest, error=message)

        try:
            info = path.lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return failed(f"{path}: cannot read: {exc.strerror}")
        if refusal is not None:
            return failed(f"{path}: refused: {refusal} (strict_permissions)")
        if stat.S_ISLNK(info.st_mode):
            target = Path(os.path.realpath(path))
            if not target.is_relative_to(real_folder):
                return failed(
                    f"{path}: refused: a symlink to a file outside the workflow folder "
                    "(put the file itself in the folder)"
                )
            if self.strict_permissions and (reason := _subfolder_problem(target, real_folder)):
                return failed(f"{path}: refused: {reason} (strict_permissions)")
        try:
            data = read_regular(path, MAX_FILE_BYTES, strict=self.strict_permissions)
        except WorkflowError as exc:
            return failed(str(exc)) if os.path.lexists(path) else None
        digest = hashlib.sha256(data).hexdigest()
        known = self._files.get(path)
        if known is not None and known.content_hash == digest:
            return known
        try:
            text = decode_workflow(data, str(path))
            check = self.check_uses
            workflow = load_workflow_text(text, str(path), import_uses=check is None)
            uses = workflow.spec is not None and any(n.uses for n in workflow.spec.nodes)
            problem = check(text, str(path)) if check is not None and uses else None
            if problem is not None:
                return failed(problem, digest)
        except WorkflowError as exc:
            return failed(str(exc), digest)
        except Exception as exc:  # a file must never take the daemon down
            return failed(f"{path}: cannot load: {type(exc).__name__}", digest)
        return WorkflowEntry(path=path, name=workflow.name, content_hash=digest, workflow=workflow)

    def _rebuild_names(self) -> None:
        names: dict[str, WorkflowEntry] = {}
        shadowed: dict[Path, WorkflowEntry] = {}
        for path in sorted(self._files):
            entry = self._files[path]
            if entry.workflow is None:
                continue
            if entry.name in names:
                first = names[entry.name].path.name
                shadowed[path] = WorkflowEntry(
                    path=path,
                    name=entry.name,
                    content_hash=entry.content_hash,
                    error=f"{path}: workflow name {entry.name!r} is already used by {first}",
                )
                continue
            names[entry.name] = entry
        self._names = names
        self._shadowed = shadowed
