"""Reading workflow files without trusting them, and who may write them (StrictModes).

A workflow file is read only if it is a regular file: it is opened non-blocking (a FIFO
must not block `open`), its type is checked on the opened descriptor, and at most `limit`
bytes are read whatever `stat` says (`/dev/zero` reports size 0).

Anyone who can write a workflow file, or its folder, can run code as the daemon's user.
So, like sshd's StrictModes, the daemon refuses a workflow folder or file that is writable
by group or others or owned by another user (root is fine). Folders above the workflow
folder, up to `/`, are checked too; there, a folder writable by others is accepted if it
has the sticky bit (as `/tmp` does: nobody can rename or delete what they do not own).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from tead.errors import Location, Problem, WorkflowError

_KINDS = {
    stat.S_IFDIR: "is a directory",
    stat.S_IFCHR: "is a character device",
    stat.S_IFBLK: "is a block device",
    stat.S_IFIFO: "is a FIFO (named pipe)",
    stat.S_IFSOCK: "is a socket",
    stat.S_IFLNK: "is a symbolic link",
}
_CHUNK = 1 << 16


def _not_regular(mode: int) -> str:
    kind = _KINDS.get(stat.S_IFMT(mode), "is not a regular file")
    return f"{kind}, not a workflow file"


def read_regular(path: str | os.PathLike[str], limit: int, *, strict: bool = False) -> bytes:
    """The bytes of the regular file `path` (symlinks followed); WorkflowError if it is
    missing, not a regular file, unreadable or larger than `limit` bytes, or (`strict`)
    if someone other than the daemon's user or root could change it."""
    where = Location(str(path))

    def fail(message: str) -> WorkflowError:
        return WorkflowError([Problem(message, where)])

    try:
        before = os.stat(path)  # refuse devices and FIFOs before even opening them
        if not stat.S_ISREG(before.st_mode):
            raise fail(_not_regular(before.st_mode))
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise fail("no such file") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket (or a FIFO swapped in since the stat)
            raise fail(_not_regular(stat.S_IFSOCK)) from None
        raise fail(f"cannot read: {exc.strerror}") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # replaced between the stat and the open
            raise fail(_not_regular(opened.st_mode))
        if strict and (reason := unsafe_owner_or_mode(opened)):
            raise fail(f"refused: the file {reason} (strict_permissions)")
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > limit:
        raise fail(f"larger than {limit} bytes")
    return b"".join(chunks)


def unsafe_owner_or_mode(info: os.stat_result, *, sticky_ok: bool = False) -> str | None:
    """Why someone other than the daemon's user (or root) could change this file or
    folder, or None."""
    me = os.geteuid()
    if info.st_uid not in (0, me):
        return f"is owned by another user (uid {info.st_uid})"
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and not (sticky_ok and info.st_mode & stat.S_ISVTX):
        who = "group and others" if writable == stat.S_IWGRP | stat.S_IWOTH else None
        who = who or ("group" if writable == stat.S_IWGRP else "others")
        return f"is writable by {who} (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def folder_problem(folder: Path) -> str | None:
    """Why the workflow folder is not safe to run code from (one line), or None.

    Checks the folder itself (after following symlinks) and every folder above it, both
    along the path as given and along its real path.
    """
    given = Path(os.path.abspath(folder))
    real = Path(os.path.realpath(folder))
    try:
        info = os.stat(real)
    except OSError as exc:
        return f"workflow folder {given}: cannot check: {exc.strerror}"
    if reason := unsafe_owner_or_mode(info):
        return f"workflow folder {given} {reason}; anyone who can write there runs code as tead"
    above = {*given.parents, *real.parents}
    for parent in sorted(above, key=lambda p: len(p.parts), reverse=True):
        try:
            info = os.stat(parent)
        except OSError:
            continue
        if reason := unsafe_owner_or_mode(info, sticky_ok=True):
            return (
                f"folder {parent} above the workflow folder {reason}; "
                "whoever can write there can replace the workflows"
            )
    return None
