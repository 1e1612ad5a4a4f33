"""Shared-memory region files: a gateway killed with its resource tracker leaves its files; the next reclaims them."""

from __future__ import annotations

import fcntl
import os
import time
import uuid

from gateway.triton import shm


def _region_file(suffix: str, age_s: float) -> str:
    name = f"{shm.PREFIX}test-{uuid.uuid4().hex[:8]}-{suffix}"
    path = f"{shm.SHM_DIR}/{name}"
    with open(path, "wb") as file:
        file.write(b"\0" * 4096)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return name


def test_the_files_of_dead_gateways_are_reclaimed_and_live_or_young_ones_kept():
    dead = [_region_file(f"dead-{i}", age_s=3600) for i in range(3)]
    live, young = _region_file("live", age_s=3600), _region_file("young", age_s=1)
    lock = os.open(f"{shm.SHM_DIR}/{live}", os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)  # its owner lives
    inputs = None
    try:
        inputs = shm.SharedInputs(1, 4096)  # a new gateway's regions: it reclaims as it creates them
        left = set(os.listdir(shm.SHM_DIR))
        assert not left & set(dead)
        assert {live, young} <= left and {region.name for region in inputs.regions} <= left
    finally:
        os.close(lock)
        for name in (*dead, live, young):
            try:
                os.unlink(f"{shm.SHM_DIR}/{name}")
            except FileNotFoundError:
                pass
        if inputs is not None:
            import asyncio

            asyncio.run(inputs.close(None))
