"""The file store: an atomic file under a lock, off the event loop, and failures that say what is wrong."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import threading
import time
from pathlib import Path

import pytest

from gateway.state import FileStore, StateDelta, StateSettings, StateStoreError, bucket_of, make_store

BUCKET = bucket_of(time.time())


def delta(**fields) -> StateDelta:
    return StateDelta(**{"key": "carbon-gateway", "period_start": 0.0, "period_end": 2e9, **fields})


async def test_the_file_is_json_replaced_whole_and_the_lock_is_a_sidecar(tmp_path: Path):
    store = FileStore(tmp_path / "deep" / "state.json")
    await store.exchange(delta(served=2, by_model={"resnet18": 2}, intensity={BUCKET: 150.0}, requests={BUCKET: 2}))
    document = json.loads((tmp_path / "deep" / "state.json").read_text())
    account = document["deployments"]["carbon-gateway"]["accounts"]["0"]
    assert (account["served"], account["by_model"]) == (2.0, {"resnet18": 2.0})
    assert document["deployments"]["carbon-gateway"]["requests"] == {str(BUCKET): 2.0}
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["state.json", "state.json.lock"]  # no temp left


async def test_a_relative_path_resolves_against_the_working_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = make_store(StateSettings())  # the default: file://var/state/policy-state.json
    assert isinstance(store, FileStore) and store.path == tmp_path / "var" / "state" / "policy-state.json"
    await store.exchange(delta(served=1))
    assert (tmp_path / "var" / "state" / "policy-state.json").is_file()
    assert make_store(StateSettings(url=f"file://{tmp_path}/abs.json")).path == tmp_path / "abs.json"


async def test_exchanges_run_off_the_event_loop(tmp_path: Path):
    store = FileStore(tmp_path / "state.json", lock_timeout_s=5)
    descriptor = os.open(store.lock_path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)  # another process holds the file for a while
    threading.Timer(0.5, os.close, [descriptor]).start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    snapshot = await store.exchange(delta(served=1))
    ticker.cancel()
    assert snapshot.served == 1 and ticks >= 20  # the loop kept running while the exchange waited


async def test_a_lock_held_too_long_is_an_error_not_a_hang(tmp_path: Path):
    store = FileStore(tmp_path / "state.json", lock_timeout_s=0.3)
    descriptor = os.open(store.lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(StateStoreError, match=r"held state.json.lock for over 0.3 s"):
            await store.exchange(delta(served=1))
        assert time.monotonic() - started < 2
    finally:
        os.close(descriptor)
    assert (await store.exchange(delta(served=1))).served == 1


@pytest.mark.parametrize("text, message", [(b"{", "not a policy-state file"),
                                           (b'{"version": 2}', "version"),
                                           (b'{"deployments": {"k": {"requests": {"x": 1}}}}', "requests")])
async def test_a_garbled_file_is_reported_and_left_alone(tmp_path: Path, text: bytes, message: str):
    path = tmp_path / "state.json"
    path.write_bytes(text)
    store = FileStore(path)
    for call in (store.exchange(delta(served=1)), store.load("carbon-gateway", 0.0, 0)):
        with pytest.raises(StateStoreError, match=message) as caught:
            await call
        assert str(path) in str(caught.value) and caught.value.status == 503
    assert path.read_bytes() == text  # an account is never overwritten by accident


async def test_an_unwritable_place_is_a_state_store_error(tmp_path: Path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = FileStore(blocker / "state.json")
    with pytest.raises(StateStoreError, match="cannot update"):
        await store.exchange(delta(served=1))
    with pytest.raises(StateStoreError, match="cannot read"):
        await store.load("carbon-gateway", 0.0, 0)


async def test_load_of_a_missing_file_is_zeros(tmp_path: Path):
    snapshot = await FileStore(tmp_path / "nothing-yet.json").load("carbon-gateway", 5.0, 0)
    assert (snapshot.period_start, snapshot.served, snapshot.intensity) == (5.0, 0.0, {})
