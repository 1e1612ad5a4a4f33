"""Process lifetimes: children that do not outlive the gateway that started them."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """Have Linux send this process SIGTERM when its parent dies, even by SIGKILL (elsewhere: nothing).

    ``parent``: the pid the caller expects as its parent; if that one is already gone (it died before this
    ran), SIGTERM now. In a ``Popen`` child, call it as ``preexec_fn``; in a ``multiprocessing`` child, first
    thing.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)
