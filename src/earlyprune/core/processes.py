"""Facts about processes on this host, used to tell a live claim from an abandoned one."""

from __future__ import annotations

import os


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks after boot, Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_namespace() -> str | None:
    """This process's PID namespace (containers sharing a host name may not share pids)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux
        return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed child not yet reaped) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True
