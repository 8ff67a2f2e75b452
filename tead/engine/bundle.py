"""A workflow as it travels: its file and the Python source beside it, named by a content
hash, and the loaded workflows a receiving process keeps.

A bundle holds what a machine with tead installed, but not the user's folder, needs to
load the workflow: the file's text and name, and the Python source importable from the
file's folder (`uses:` modules, what `run:` code and those modules import from beside the
file): every `*.py` file directly in the folder and, recursively, those of its packages
(sub-folders with an `__init__.py`). Files and folders whose names are not Python
identifiers, hidden ones and `__pycache__` are left out, as are compiled extension modules
and data files; a symlinked file must point inside the folder (BundleError otherwise). The
total is bounded (`MAX_BUNDLE_BYTES`, `MAX_BUNDLE_FILES`).

Its digest is a sha256 over everything in it, so a host keeps one copy per content: the
sender ships a bundle once, tasks name it by digest (`BranchTask.to_json`).

    sender:  bundle = bundle_of(workflow)             # made once per loaded workflow
             send(bundle.to_json()) once per host and digest, then send(task.to_json())
    host:    workflows = LoadedWorkflows()            # one per worker process
             workflows.receive(WorkflowBundle.from_json(message))
             task = BranchTask.from_json(message, workflows.get)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import os
import shutil
import stat
import sys
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tead.errors import BundleError
from tead.graph.compiled import WorkflowGraph
from tead.graph.loader import load_workflow_text

FORMAT = "tead-bundle/1"
MAX_BUNDLE_BYTES = 8 * 1024 * 1024  # the workflow's text and every file, together
MAX_BUNDLE_FILES = 1000

Loader = Callable[[str, str], WorkflowGraph]  # (text, path) -> WorkflowGraph


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowBundle:
    """A workflow file and the Python source beside it, named by the sha256 of it all."""

    digest: str
    name: str  # the workflow file's name
    text: str
    files: tuple[tuple[str, bytes], ...]  # (path relative to the file's folder, content)

    @classmethod
    def make(cls, *, name: str, text: str, files: Mapping[str, bytes]) -> WorkflowBundle:
        """A bundle of these contents, its digest computed (files in path order)."""
        ordered = tuple(sorted(files.items()))
        _check_contents(name, text, ordered)
        return cls(digest=_digest(name, text, ordered), name=name, text=text, files=ordered)

    def to_json(self) -> dict[str, Any]:
        """The bundle as JSON-safe data (file contents in base64)."""
        return {
            "format": FORMAT,
            "digest": self.digest,
            "name": self.name,
            "text": self.text,
            "files": [[path, base64.b64encode(data).decode("ascii")] for path, data in self.files],
        }

    @classmethod
    def from_json(cls, data: Any) -> WorkflowBundle:
        """The bundle `to_json` made; BundleError if malformed, unsafe or altered."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BundleError(f"not a workflow bundle of format {FORMAT!r}")
        digest, name, text, files = (data.get(k) for k in ("digest", "name", "text", "files"))
        if not (isinstance(digest, str) and isinstance(name, str) and isinstance(text, str)):
            raise BundleError("a workflow bundle needs a string digest, name and text")
        if not isinstance(files, list) or not all(_is_file_entry(f) for f in files):
            raise BundleError("a workflow bundle's files are [path, base64 content] pairs")
        try:
            decoded = {path: base64.b64decode(content, validate=True) for path, content in files}
        except binascii.Error:
            raise BundleError("a workflow bundle's file content is not base64") from None
        if len(decoded) != len(files):
            raise BundleError("a workflow bundle names a file twice")
        bundle = cls.make(name=name, text=text, files=decoded)
        if bundle.digest != digest:
            raise BundleError(f"workflow bundle {digest[:12]!r} does not match its digest")
        return bundle


def bundle_of(workflow: WorkflowGraph) -> WorkflowBundle:
    """The bundle of a workflow loaded from a file, made on first use and kept with it.

    BundleError for a graph built in code, and for a folder with too much Python source.
    """
    source = workflow.source
    if source is None:
        raise BundleError(
            f"workflow {workflow.name!r} was built in code (Graph.compile()) and cannot be "
            "sent to a host; load it from a file"
        )
    made = source.shipped
    if isinstance(made, WorkflowBundle):
        return made
    path = Path(source.path)
    bundle = WorkflowBundle.make(
        name=path.name, text=source.text, files=folder_sources(path.resolve().parent, path.name)
    )
    object.__setattr__(source, "shipped", bundle)  # a cache: equal for every caller
    return bundle


def folder_sources(folder: Path, skip: str = "") -> dict[str, bytes]:
    """The Python source importable from `folder` (see the module docstring), by relative
    path; `skip` is a file name to leave out (the workflow file itself)."""
    try:
        listed = itertools.islice(_source_files(folder, ""), MAX_BUNDLE_FILES + 2)
        files = {rel: path for rel, path in listed if rel != skip}
        sizes = {rel: path.stat().st_size for rel, path in files.items()}
        if sum(sizes.values()) <= MAX_BUNDLE_BYTES and len(files) <= MAX_BUNDLE_FILES:
            found = {rel: _read(path) for rel, path in files.items()}
            sizes = {rel: len(data) for rel, data in found.items()}  # as read: it may grow
            if sum(sizes.values()) <= MAX_BUNDLE_BYTES:
                return found
    except OSError as exc:
        raise BundleError(f"cannot read {folder} for the workflow's bundle: {exc}") from None
    biggest = sorted(sizes, key=lambda rel: (-sizes[rel], rel))[:3]
    raise BundleError(
        f"the Python source beside the workflow in {folder} is more than {MAX_BUNDLE_FILES} "
        f"files or {MAX_BUNDLE_BYTES // 2**20} MiB ({len(files)} files, largest: "
        f"{', '.join(biggest)}); keep only the modules the workflow needs beside it"
    )


def _read(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(MAX_BUNDLE_BYTES + 1)


def _source_files(
    folder: Path, prefix: str, root: Path | None = None
) -> Iterator[tuple[str, Path]]:
    """(relative path, file) of the sources under `folder`; a symlinked file must stay
    inside `root` (the workflow's folder): what it points to is shipped to other hosts."""
    root = root or folder
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return  # a workflow loaded from text with a made-up path
    for entry in entries:
        stem, dot, suffix = entry.name.partition(".")
        if not stem.isidentifier() or stem == "__pycache__":
            continue
        if dot and suffix == "py" and entry.is_file():
            path = Path(entry.path)
            if entry.is_symlink() and not path.resolve().is_relative_to(root):
                raise BundleError(
                    f"{path} links to a file outside the workflow's folder {root}; copy "
                    "the module beside the workflow instead"
                )
            yield prefix + entry.name, path
        elif (
            not dot
            and entry.is_dir(follow_symlinks=False)
            and (Path(entry.path) / "__init__.py").is_file()
        ):
            yield from _source_files(Path(entry.path), f"{prefix}{entry.name}/", root)


class LoadedWorkflows:
    """The workflows this process has loaded, each once: from a source whose folder is on
    this machine (`from_source`, the process strategy) or from a received bundle
    (`receive`, a host), written into a private folder named by its digest.

    `root` holds received bundles (default: a folder of this user's under the system's
    temporary folder, 0700); `load` turns (text, path) into a WorkflowGraph; at most `limit`
    workflows of each kind are kept (least recently used go first).
    """

    def __init__(
        self, *, root: Path | None = None, load: Loader = load_workflow_text, limit: int = 32
    ) -> None:
        self._root = root or Path(tempfile.gettempdir()) / f"tead-bundles-{os.getuid()}"
        self._load = load
        self._limit = limit
        self._lock = threading.Lock()
        self._by_source: OrderedDict[tuple[str, str], WorkflowGraph] = OrderedDict()
        self._by_digest: OrderedDict[str, WorkflowGraph] = OrderedDict()
        # every bundle received: its folder and its modules' names (to activate it again)
        self._folders: dict[str, tuple[Path, frozenset[str]]] = {}
        self._active: str | None = None  # the bundle whose modules import now

    def from_source(self, text: str, path: str) -> WorkflowGraph:
        """The workflow of this text, loaded from its own path (its folder is here)."""
        key = (text, path)
        with self._lock:
            found = self._by_source.get(key)
            if found is not None:
                self._by_source.move_to_end(key)
                return found
            workflow = self._by_source[key] = self._load(text, path)
            if len(self._by_source) > self._limit:
                self._by_source.popitem(last=False)
            return workflow

    def receive(self, bundle: WorkflowBundle) -> WorkflowGraph:
        """The bundle's workflow, loaded from this machine's copy of its files."""
        with self._lock:
            found = self._by_digest.get(bundle.digest)
            if found is not None:
                self._by_digest.move_to_end(bundle.digest)
                self._activate(bundle.digest)
                return found
            folder = self._unpack(bundle)
            self._folders[bundle.digest] = (folder, frozenset(_top_level_names(bundle)))
            self._activate(bundle.digest)
            workflow = self._load(bundle.text, str(folder / bundle.name))
            _check_modules_from(workflow, bundle, folder)
            self._by_digest[bundle.digest] = workflow
            if len(self._by_digest) > self._limit:
                self._by_digest.popitem(last=False)
            return workflow

    def get(self, digest: str) -> WorkflowGraph:
        """The workflow of a bundle received before; BundleError if it was not (or was
        dropped since: send it again)."""
        with self._lock:
            found = self._by_digest.get(digest)
            if found is not None:
                self._activate(digest)
        if found is None:
            raise BundleError(f"no workflow bundle {digest[:12]!r} was received here")
        return found

    def activate(self, digest: str) -> None:
        """Let the modules of a bundle received before import from its folder again, for
        a task of its workflow (kept by the caller): another bundle may have been
        received since."""
        with self._lock:
            self._activate(digest)

    def _activate(self, digest: str) -> None:
        """Let this bundle's modules import from its folder, not another bundle's: another
        version of them (a workflow edited since, or before) may have been received
        before. Modules and sys.path entries of other bundles under `root` are dropped
        (workflows loaded from them keep the modules they hold); nothing else is touched."""
        if digest == self._active or digest not in self._folders:
            return
        folder, shipped = self._folders[digest]
        root = f"{self._root.resolve()}{os.sep}"
        own = f"{folder}{os.sep}"
        for name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None) or ""
            ours = name.partition(".")[0] in shipped and where.startswith(root)
            if ours and not where.startswith(own):
                del sys.modules[name]
        sys.path[:] = [p for p in sys.path if not (p.startswith(root) and p != str(folder))]
        if str(folder) not in sys.path:
            sys.path.append(str(folder))  # as loading its workflow did
        self._active = digest

    def _unpack(self, bundle: WorkflowBundle) -> Path:
        """The folder holding the bundle's files, written first if needed (atomically)."""
        root = self._private_root()
        folder = root / bundle.digest
        if folder.is_dir():
            return folder.resolve()
        incoming = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))  # 0700
        try:
            for relative, data in ((bundle.name, _text_bytes(bundle.text)), *bundle.files):
                target = incoming / relative
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                target.write_bytes(data)
            os.rename(incoming, folder)
        except OSError:
            shutil.rmtree(incoming, ignore_errors=True)
            if not folder.is_dir():  # else another process wrote the same content first
                raise
        return folder.resolve()

    def _private_root(self) -> Path:
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(self._root)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise BundleError(f"refusing {self._root} for workflow bundles: not a folder of ours")
        if info.st_mode & 0o077:
            raise BundleError(
                f"refusing {self._root} for workflow bundles: others may read or write it "
                "(it must be mode 0700)"
            )
        return self._root


def _check_modules_from(workflow: WorkflowGraph, bundle: WorkflowBundle, folder: Path) -> None:
    """BundleError if a `uses:` module the bundle holds was imported from elsewhere (one
    of that name was imported before in this process, or comes first on sys.path)."""
    shipped = _top_level_names(bundle)
    nodes = workflow.spec.nodes if workflow.spec is not None else []
    for top in sorted({n.uses.partition(":")[0].partition(".")[0] for n in nodes if n.uses}):
        module = sys.modules.get(top)
        where = getattr(module, "__file__", None) if module is not None else None
        if top in shipped and (where is None or not Path(where).resolve().is_relative_to(folder)):
            raise BundleError(
                f"uses: module {top!r} of workflow {workflow.name!r} was imported here from "
                f"{where or 'elsewhere'}, not from its bundle; give the module a name of its own"
            )


def _top_level_names(bundle: WorkflowBundle) -> set[str]:
    """The names the bundle's modules and packages are imported by."""
    return {path.partition("/")[0].removesuffix(".py") for path, _ in bundle.files}


def _digest(name: str, text: str, files: tuple[tuple[str, bytes], ...]) -> str:
    """sha256 over the format, the name, the text and each file's path and content, each
    part prefixed with its length (so no two bundles share a digest by shifting bytes)."""
    digest = hashlib.sha256()
    parts = [FORMAT.encode(), name.encode(), _text_bytes(text)]
    parts += [part for path, data in files for part in (path.encode(), data)]
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _text_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _check_contents(name: str, text: str, files: tuple[tuple[str, bytes], ...]) -> None:
    """BundleError unless every name is a safe relative path and the whole is not too big."""
    if not _safe_part(name) or "\x00" in text:
        raise BundleError("a workflow bundle's file name must be a plain file name")
    for path, _ in files:
        *folders, file = path.split("/")
        stem, dot, suffix = file.partition(".")
        if not (all(p.isidentifier() for p in folders) and stem.isidentifier()) or (
            (dot, suffix) != (".", "py")
        ):
            raise BundleError("a workflow bundle holds Python files at relative paths only")
        if path.partition("/")[0] == name:
            raise BundleError("a workflow bundle's file name clashes with one of its files")
    total = len(_text_bytes(text)) + sum(len(data) for _, data in files)
    if total > MAX_BUNDLE_BYTES or len(files) > MAX_BUNDLE_FILES:
        raise BundleError(
            f"a workflow bundle is limited to {MAX_BUNDLE_FILES} files and "
            f"{MAX_BUNDLE_BYTES // 2**20} MiB"
        )


def _safe_part(name: str) -> bool:
    return (
        bool(name)
        and name not in (".", "..")
        and not any(c in name for c in "/\\\x00")
        and name.isprintable()  # no lone surrogate (not UTF-8), no control character
    )


def _is_file_entry(entry: Any) -> bool:
    return isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)
