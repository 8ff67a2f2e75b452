"""Run a command under a seccomp allow-list, as systemd's SystemCallFilter= would.

    python tests/seccomp_exec.py ALLOWED_FILE REFUSAL UMASK -- COMMAND ARGS...

ALLOWED_FILE holds one system call name per line (the unit's filter, expanded by
`systemd-analyze syscall-filter`). Every other call gets REFUSAL: `kill` (SIGSYS, systemd's
default) or an errno name such as `EPERM` (SystemCallErrorNumber=). The filter (libseccomp,
which systemd itself uses, through ctypes) is inherited by every child: worker processes,
the forkserver, subprocesses. UMASK (octal) is set too (UMask=).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000


def apply_filter(allowed: list[str], refusal: str) -> None:
    """Install the allow-list for this process and its future children."""
    name = ctypes.util.find_library("seccomp")
    if name is None:
        raise SystemExit("seccomp_exec: libseccomp not found")
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    action = SCMP_ACT_KILL_PROCESS
    if refusal != "kill":
        action = SCMP_ACT_ERRNO | getattr(errno, refusal)
    ctx = lib.seccomp_init(action)
    if not ctx:
        raise SystemExit("seccomp_exec: seccomp_init failed")
    added = 0
    for call in allowed:
        number = lib.seccomp_syscall_resolve_name(call.encode())
        if number < 0:  # not a call of this architecture (systemd skips these too)
            continue
        if lib.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, number, 0) == 0:
            added += 1
    if added == 0:
        raise SystemExit("seccomp_exec: no system call allowed")
    if (rc := lib.seccomp_load(ctx)) != 0:
        raise SystemExit(f"seccomp_exec: seccomp_load failed ({rc})")


def main(argv: list[str]) -> None:
    allowed_file, refusal, umask, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    with open(allowed_file, encoding="utf-8") as file:
        allowed = [line.strip() for line in file if line.strip()]
    os.umask(int(umask, 8))
    apply_filter(allowed, refusal)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
