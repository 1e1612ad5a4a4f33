"""``CpuPool``: CPU-bound work off the event loop, on no more threads than it was given."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from gateway.serving.cpu import CpuPool, usable_cores
from gateway.serving.runtime import build_service
from gateway.settings import GatewaySettings
from tests.support.backend import FakeBackend

from tests.support.data import POOL_MODELS
from tests.support.gateway import settings_for


def test_by_default_one_thread_per_core_this_process_may_use():
    pool = CpuPool()
    try:
        assert pool.threads == usable_cores() == len(os.sched_getaffinity(0))
    finally:
        pool.close()


async def test_work_runs_on_the_pools_threads_and_never_more_at_once_than_it_has():
    pool = CpuPool(2)
    running, most, names = 0, 0, set()
    lock = threading.Lock()

    def work(seconds: float) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(seconds)
        with lock:
            running -= 1
        return threading.current_thread().name

    try:
        names = set(await asyncio.gather(*(pool.run(work, 0.02) for _ in range(8))))
    finally:
        pool.close()
    assert most == 2
    assert len(names) == 2 and all(name.startswith("gateway-cpu") for name in names)


async def test_an_exception_in_the_work_reaches_the_caller():
    pool = CpuPool(1)
    try:
        with pytest.raises(ZeroDivisionError):
            await pool.run(divmod, 1, 0)
    finally:
        pool.close()


def test_the_settings_size_the_pool(fake_repository):
    gateway = build_service(settings_for(fake_repository, limits__cpu_threads=3), FakeBackend(POOL_MODELS))
    try:
        assert gateway.cpu.threads == 3
    finally:
        gateway.cpu.close()


def test_the_thread_count_must_be_positive():
    with pytest.raises(ValueError, match="cpu_threads"):
        GatewaySettings(limits={"cpu_threads": 0})
