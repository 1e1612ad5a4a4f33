"""The Redis store against a real redis-server: its keys, their expiry, and a server that dies, hangs and
comes back."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio

from gateway.state import RETENTION_S, RedisStore, StateDelta, StateStoreError, bucket_of
from tests.support.redis import RedisServer

BUCKET = bucket_of(time.time())


def delta(**fields) -> StateDelta:
    return StateDelta(**{"key": "carbon-gateway", "period_start": 1_700_000_000.0, "period_end": time.time() + 86400,
                         **fields})


@pytest.fixture
async def store(redis_server: RedisServer):
    opened = RedisStore(redis_server.url)
    yield opened
    await opened.close()


@pytest.fixture
async def client(redis_server: RedisServer):
    raw = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    yield raw
    await raw.aclose()


async def test_the_keys_and_their_expiry(store: RedisStore, client):
    sent = delta(served=3, error_sum=19.5, co2_g=0.75, by_model={"resnet18": 3}, intensity={BUCKET: 210.0},
                 requests={BUCKET: 3})
    await store.exchange(sent)
    account = "carbon-gateway:account:1700000000"
    assert sorted(await client.keys("*")) == [account, "carbon-gateway:intensity", "carbon-gateway:requests"]
    fields = await client.hgetall(account)
    assert {k: float(v) for k, v in fields.items()} == {
        "served": 3, "error_sum": 19.5, "co2_g": 0.75, "model:resnet18": 3, "period_start": sent.period_start,
        "period_end": pytest.approx(sent.period_end)}
    assert await client.hgetall("carbon-gateway:intensity") == {str(BUCKET): "210.0"}
    ttl = await client.ttl(account)  # the account outlives its period by the retention
    assert ttl == pytest.approx(sent.period_end + RETENTION_S - time.time(), abs=5)
    assert 0 < await client.ttl("carbon-gateway:requests") <= RETENTION_S


async def test_a_dead_store_fails_within_a_second_and_serves_again_once_restarted(store: RedisStore,
                                                                                   redis_server: RedisServer):
    assert (await store.exchange(delta(served=1))).served == 1
    redis_server.kill()
    for call in (store.exchange(delta(served=1)), store.load("carbon-gateway", 0.0, 0)):
        started = time.monotonic()
        with pytest.raises(StateStoreError, match=r"redis store redis://127\.0\.0\.1:\d+/0: cannot (exchange|load)"):
            await call
        assert time.monotonic() - started < 1.5
    redis_server.start()
    assert (await store.exchange(delta(served=2))).served == 2  # a new, empty server (the tests' keeps nothing)


async def test_a_hung_store_times_out_and_its_late_answer_is_never_read_as_the_next(store: RedisStore,
                                                                                     redis_server: RedisServer):
    await store.exchange(delta(served=1))
    redis_server.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(StateStoreError, match="no answer within 1 s"):
            await store.exchange(delta(served=10))
        assert time.monotonic() - started < 2.0
    finally:
        redis_server.thaw()
    # The frozen server still ran the transaction once thawed (its reply was lost): at-least-once, as documented.
    await asyncio.sleep(0.2)
    snapshot = await store.exchange(delta(served=100, requests={BUCKET: 1}))
    assert snapshot.served in (101, 111) and snapshot.requests == {BUCKET: 1}


async def test_each_process_prunes_old_buckets_about_hourly(redis_server: RedisServer, client):
    now = [time.time()]
    store = RedisStore(redis_server.url, clock=lambda: now[0])
    try:
        old = bucket_of(now[0] - RETENTION_S - 3600)
        await client.hset("carbon-gateway:intensity", mapping={str(old): 1.0, "garbage": 2.0})
        await store.exchange(delta(intensity={BUCKET: 5.0}))  # the first exchange prunes
        assert await client.hgetall("carbon-gateway:intensity") == {str(BUCKET): "5.0"}
        await client.hset("carbon-gateway:intensity", str(old), 1.0)
        await store.exchange(delta(served=1))
        assert str(old) in await client.hkeys("carbon-gateway:intensity")  # not again within the hour
        now[0] += 3601
        await store.exchange(delta(served=1))
        assert str(old) not in await client.hkeys("carbon-gateway:intensity")
    finally:
        await store.close()


async def test_garbage_in_the_store_is_a_state_store_error(store: RedisStore, client):
    await client.hset("carbon-gateway:account:1700000000", "served", "lots")
    with pytest.raises(StateStoreError, match="served holds 'lots'"):
        await store.load("carbon-gateway", 1_700_000_000.0, 0)
    await client.set("carbon-gateway:requests", "not a hash")
    with pytest.raises(StateStoreError, match="WRONGTYPE"):
        await store.exchange(delta(requests={BUCKET: 1}))


async def test_credentials_stay_out_of_names_and_errors():
    store = RedisStore("redis://user:s3cret-pass@127.0.0.1:9/0")
    try:
        assert store.url == "redis://user:***@127.0.0.1:9/0" and "s3cret" not in repr(store)
        with pytest.raises(StateStoreError) as caught:
            await store.exchange(delta(served=1))
        assert "s3cret" not in str(caught.value) and "127.0.0.1:9" in str(caught.value)
    finally:
        await store.close()
