"""What every store promises (``PolicyStore``), on a JSON file and on a real Redis: the fleet's totals, the
buckets asked for, retention; and exact totals when four processes exchange at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import time


from gateway.state.file import FileStore, path_of
from gateway.state.redis import RedisStore
from gateway.state import (BUCKET_S, RETENTION_S, NullStore, PolicyStore, StateDelta, StateSettings, StateSnapshot,
                           bucket_of, make_store)

NOW = time.time()
MONTH_START = float(bucket_of(NOW - 10 * 86400))  # any epoch second serves as a period's start
MONTH_END = MONTH_START + 30 * 86400
BUCKET = bucket_of(NOW)


def delta(**fields) -> StateDelta:
    return StateDelta(**{"key": "carbon-gateway", "period_start": MONTH_START, "period_end": MONTH_END, **fields})


async def test_an_exchange_adds_increments_sets_intensities_and_answers_the_fleets_totals(store: PolicyStore):
    first = await store.exchange(delta(served=3, error_sum=19.5, co2_g=0.75, by_model={"resnet18": 3},
                                       intensity={BUCKET: 210.0}, requests={BUCKET: 3}))
    assert first == StateSnapshot(period_start=MONTH_START, served=3, error_sum=19.5, co2_g=0.75,
                                  by_model={"resnet18": 3}, intensity={BUCKET: 210.0}, requests={BUCKET: 3})
    # Another process: more requests, another model, the grid's newer value for the bucket, an older bucket.
    second = await store.exchange(delta(served=2, error_sum=10.0, co2_g=0.5, by_model={"resnet50": 2},
                                        intensity={BUCKET: 190.0, BUCKET - BUCKET_S: 250.0},
                                        requests={BUCKET: 2}))
    assert (second.served, second.error_sum, second.co2_g) == (5, 29.5, 1.25)
    assert second.by_model == {"resnet18": 3, "resnet50": 2}
    assert second.intensity == {BUCKET: 190.0, BUCKET - BUCKET_S: 250.0}  # set, not added
    assert second.requests == {BUCKET: 5}  # the older bucket has no requests: absent, not zero


async def test_an_exchange_answers_exactly_the_buckets_it_names(store: PolicyStore):
    await store.exchange(delta(served=1, intensity={BUCKET - 2 * BUCKET_S: 100.0}, requests={BUCKET - 2 * BUCKET_S: 1}))
    only_counts = await store.exchange(delta(served=1))
    assert only_counts.served == 2 and only_counts.intensity == {} and only_counts.requests == {}
    named = await store.exchange(delta(requests={BUCKET: 4}))
    assert named.served == 2 and named.requests == {BUCKET: 4} and named.intensity == {}


async def test_accounts_of_other_periods_and_keys_are_apart(store: PolicyStore):
    await store.exchange(delta(served=5, requests={BUCKET: 5}))
    other_period = await store.exchange(delta(period_start=MONTH_END, period_end=MONTH_END + 86400, served=1))
    assert other_period.served == 1
    other_key = await store.exchange(delta(key="staging", served=7, requests={BUCKET: 7}))
    assert other_key.served == 7 and other_key.requests == {BUCKET: 7}
    assert (await store.load("carbon-gateway", MONTH_START, 0)).served == 5


async def test_load_reads_the_account_and_every_bucket_since(store: PolicyStore):
    assert await store.load("carbon-gateway", MONTH_START, 0) == StateSnapshot(period_start=MONTH_START)
    day_ago, hour_ago = bucket_of(NOW - 86400), bucket_of(NOW - 3600)
    await store.exchange(delta(served=4, error_sum=26.0, co2_g=2.0, by_model={"resnet18": 4},
                               intensity={day_ago: 300.0, hour_ago: 200.0, BUCKET: 100.0},
                               requests={day_ago: 1, hour_ago: 1, BUCKET: 2}))
    loaded = await store.load("carbon-gateway", MONTH_START, since=hour_ago)
    assert loaded == StateSnapshot(period_start=MONTH_START, served=4, error_sum=26.0, co2_g=2.0,
                                   by_model={"resnet18": 4}, intensity={hour_ago: 200.0, BUCKET: 100.0},
                                   requests={hour_ago: 1, BUCKET: 2})
    assert (await store.load("carbon-gateway", MONTH_END, since=NOW + 3600)) == StateSnapshot(period_start=MONTH_END)


async def test_buckets_and_accounts_past_the_retention_are_dropped(store: PolicyStore, store_url: str):
    old_bucket = bucket_of(NOW - RETENTION_S - 86400)
    old_start, old_end = NOW - RETENTION_S - 60 * 86400, NOW - RETENTION_S - 30 * 86400
    await store.exchange(delta(period_start=old_start, period_end=old_end, served=9))
    await store.exchange(delta(intensity={old_bucket: 100.0}, requests={old_bucket: 1}))
    # Another process's first exchange prunes (Redis: then hourly; the file: every time).
    other = make_store(StateSettings(url=store_url))
    try:
        await other.exchange(delta(served=1, intensity={BUCKET: 100.0}, requests={BUCKET: 1}))
    finally:
        await other.close()
    loaded = await store.load("carbon-gateway", old_start, since=0)
    assert loaded.served == 0  # that account's period ended more than 35 days ago
    recent = await store.load("carbon-gateway", MONTH_START, since=0)
    assert recent.intensity == {BUCKET: 100.0} and recent.requests == {BUCKET: 1}


async def test_a_writers_delta_counts_once_however_often_it_arrives(store: PolicyStore):
    """A retry after a lost reply, or copies a hung store wakes up with: the writer's sequence number says
    which delta it is, and only a number above the last applied one adds up."""
    first = delta(served=2, error_sum=13.0, by_model={"resnet18": 2}, requests={BUCKET: 2}, writer="a", sequence=1)
    assert (await store.exchange(first)).served == 2
    again = await store.exchange(first)
    assert (again.served, again.error_sum, again.by_model, again.requests) == (2, 13.0, {"resnet18": 2}, {BUCKET: 2})
    assert (await store.exchange(delta(served=1, writer="a", sequence=3))).served == 3
    assert (await store.exchange(delta(served=5, writer="a", sequence=2))).served == 3  # older than the last
    assert (await store.exchange(delta(served=1, writer="b", sequence=1))).served == 4  # another writer's own
    for _ in range(2):  # no writer: applied every time
        await store.exchange(delta(served=1))
    assert (await store.load("carbon-gateway", MONTH_START, since=0)).served == 6


async def test_writers_silent_past_the_retention_are_forgotten(store_url: str):
    def opened(clock):
        if store_url.startswith("file://"):
            return FileStore(path_of(store_url), clock=clock)
        return RedisStore(store_url, clock=clock)

    then = opened(lambda: NOW - RETENTION_S - 86400)
    await then.exchange(delta(served=1, writer="gone", sequence=7))
    await then.close()
    now = opened(time.time)
    try:
        await now.exchange(delta(served=1, writer="here", sequence=1))  # prunes
        # "gone" is forgotten: a delta numbered below its last one is new again.
        assert (await now.exchange(delta(served=1, writer="gone", sequence=1))).served == 3
    finally:
        await now.close()


def _exchange_many(url: str, worker: int, count: int, barrier, month_start: float, bucket: int) -> None:
    """One process of the fleet: ``count`` exchanges as fast as the store allows. The period and bucket come
    from the parent: this process imports the module afresh, maybe in another 15-minute bucket."""
    store = make_store(StateSettings(url=url))

    async def run() -> None:
        for i in range(count):
            snapshot = await store.exchange(delta(served=1, error_sum=0.5, co2_g=0.25, by_model={f"m{worker % 2}": 1},
                                                  intensity={bucket: float(worker)}, requests={bucket: 1},
                                                  writer=f"w{worker}", sequence=i + 1, period_start=month_start))
            assert snapshot.served >= i + 1  # its own exchanges at least, and any of the others'
        await store.close()

    barrier.wait(timeout=60)
    asyncio.run(run())


async def test_four_processes_exchanging_at_once_lose_nothing(store_url: str):
    context = multiprocessing.get_context("spawn")
    workers, count = 4, 200
    barrier = context.Barrier(workers)
    processes = [context.Process(target=_exchange_many, args=(store_url, w, count, barrier, MONTH_START, BUCKET))
                 for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        await asyncio.to_thread(process.join, 120)
    assert [p.exitcode for p in processes] == [0] * workers
    store = make_store(StateSettings(url=store_url))
    try:
        fleet = await store.load("carbon-gateway", MONTH_START, since=BUCKET)
    finally:
        await store.close()
    total = workers * count
    assert (fleet.served, fleet.error_sum, fleet.co2_g) == (total, total * 0.5, total * 0.25)
    assert fleet.by_model == {"m0": total / 2, "m1": total / 2}
    assert fleet.requests == {BUCKET: total}
    assert fleet.intensity[BUCKET] in {0.0, 1.0, 2.0, 3.0}  # whoever wrote last


async def test_the_null_store_keeps_nothing():
    store = NullStore.from_url("none")
    sent = delta(served=2, error_sum=13.0, co2_g=0.5, by_model={"resnet18": 2}, intensity={BUCKET: 99.0},
                 requests={BUCKET: 2})
    for _ in range(2):  # the same answer twice: nothing adds up
        assert await store.exchange(sent) == StateSnapshot(period_start=MONTH_START, served=2, error_sum=13.0,
                                                           co2_g=0.5, by_model={"resnet18": 2},
                                                           intensity={BUCKET: 99.0}, requests={BUCKET: 2})
    assert await store.load("carbon-gateway", MONTH_START, 0) == StateSnapshot(period_start=MONTH_START)
    await store.close()
    assert (store.name, store.url) == ("none", "none")


async def test_the_memory_store_keeps_the_file_stores_promises():
    """The replay's fleet shares one ``MemoryStore``: the file store's document, so the same rules."""
    from gateway.state import MemoryStore

    for promise in (test_an_exchange_adds_increments_sets_intensities_and_answers_the_fleets_totals,
                    test_an_exchange_answers_exactly_the_buckets_it_names,
                    test_accounts_of_other_periods_and_keys_are_apart,
                    test_load_reads_the_account_and_every_bucket_since,
                    test_a_writers_delta_counts_once_however_often_it_arrives):
        await promise(MemoryStore())
