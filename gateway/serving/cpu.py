"""A bounded pool of threads for the CPU-bound part of a request: decoding and preprocessing images, parsing
large JSON tensors.

Off the event loop, and no more threads than cores: Pillow and numpy release the GIL while they work, so
threads up to the core count run in parallel, and more only take turns on the same cores (asyncio's
default pool has cores + 4) and spend CPU switching between them.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class CpuPool:
    """``threads`` worker threads (by default one per usable core) and the coroutine that hands them work."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or usable_cores()
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="gateway-cpu")

    async def run(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``function(*args, **kwargs)`` on one of the pool's threads; waits (without blocking) for a free one."""
        call = functools.partial(function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        """Stop taking work; what is running finishes on its own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
