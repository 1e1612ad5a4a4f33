"""``GatewayService`` on its own: decisions, fallback, energy and CO2, metrics through the sink, planning.

No tritonserver: the backend is the in-process ``FakeBackend``, the carbon source a static one, and the
metrics a recording sink.
"""

from __future__ import annotations

import math
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from gateway.carbon import CarbonMonitor, StaticSource
from gateway.errors import ModelNotReady, NoEligibleModel, TritonUnavailable, UnknownModel
from gateway.modelzoo.build import built_pool
from gateway.policy import Constraints, InterpolationPolicy, OnlineBudgetPolicy
from gateway.serving.health import readiness, weights
import gateway.serving.service as service_module
from gateway.serving.planner import Planner
from gateway.serving.runtime import running
from gateway.serving.dataplane import DataPlane
from gateway.serving.service import GatewayService
from gateway.metrics.sink import GatewaySnapshot
from tests.support.backend import FakeBackend

from tests.support.data import IMAGES, POOL_MODELS
from tests.support.gateway import settings_for

POOL = built_pool(dict.fromkeys(POOL_MODELS, "random"))
LABELS = tuple(f"class {i}" for i in range(1000))
BATCH = np.zeros((1, 3, 224, 224), dtype=np.float32)


class RecordingSink:
    """A ``MetricsSink`` that keeps every call, by method name."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[Any, ...]]] = {}

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        return lambda *args: self.calls.setdefault(method, []).append(args)


@pytest.fixture
async def monitor() -> AsyncIterator[CarbonMonitor]:
    async with CarbonMonitor(StaticSource(300.0), c_low=100.0, c_high=300.0) as running:
        yield running


def service(monitor: CarbonMonitor, backend: FakeBackend, policy=None, sink=None, pue: float = 1.0) -> GatewayService:
    return GatewayService(pool=POOL, policy=policy or InterpolationPolicy(POOL), carbon=monitor, backend=backend,
                          labels=LABELS, sink=sink, pue=pue)


async def test_the_policy_chooses_and_the_estimate_is_charged_with_its_co2(monitor):
    backend, sink = FakeBackend(POOL_MODELS), RecordingSink()
    outcome = await service(monitor, backend, sink=sink, pue=1.5).run(BATCH)
    smallest = POOL.by_energy[0]
    assert outcome.decision.model.name == smallest.name == "resnet18" and not outcome.decision.pinned
    assert backend.calls == [("resnet18", 1)]
    assert np.array_equal(outcome.outputs, FakeBackend.expected_logits("resnet18", BATCH))
    assert outcome.energy.joules == pytest.approx(smallest.energy_mj / 1000) and not outcome.energy.measured
    assert outcome.co2_g == pytest.approx(smallest.energy_mj / 1000 / 3.6e6 * 300.0 * 1.5)
    assert sink.calls["inferences"] == [("resnet18", 1)]
    assert sink.calls["energy"] == [("resnet18", "pool-estimate", outcome.energy.joules, outcome.co2_g)]
    assert sink.calls["request_energy"] == [("resnet18", outcome.energy.joules)]


async def test_a_model_that_is_not_ready_is_stood_in_for_by_the_nearest_in_energy(monitor):
    backend, sink = FakeBackend(POOL_MODELS), RecordingSink()
    backend.not_ready = {"resnet18", "resnet34"}
    outcome = await service(monitor, backend, sink=sink).run(BATCH)
    assert (outcome.decision.model.name, outcome.decision.fallback_from) == ("resnet50", "resnet18")
    assert [name for name, _ in backend.calls] == ["resnet50"]
    assert sink.calls["fallback"] == [("resnet18", "resnet34"), ("resnet18", "resnet50")]  # each stand-in tried


async def test_a_pinned_model_does_not_fall_back_and_an_unknown_one_is_refused(monitor):
    backend = FakeBackend(POOL_MODELS)
    backend.not_ready = {"resnet101"}
    gateway = service(monitor, backend)
    with pytest.raises(ModelNotReady):
        await gateway.run(BATCH, gateway.pool.by_name["resnet101"])
    with pytest.raises(UnknownModel, match="vgg16"):
        DataPlane(gateway, max_in_flight=4, max_batch=8).target("vgg16")
    assert backend.calls == []


async def test_when_no_model_is_ready_the_error_reaches_the_caller(monitor):
    backend = FakeBackend(POOL_MODELS)
    backend.not_ready = set(POOL_MODELS)
    with pytest.raises(ModelNotReady):
        await service(monitor, backend).run(BATCH)
    backend.live = False
    with pytest.raises(TritonUnavailable):
        await service(monitor, backend).run(BATCH)


async def test_constraints_pick_an_eligible_model_or_say_what_the_pool_offers(monitor):
    gateway = service(monitor, FakeBackend(POOL_MODELS))
    strict = await gateway.run(BATCH, constraints=Constraints(min_accuracy=94.0))
    assert strict.decision.model.name == "resnet152"
    with pytest.raises(NoEligibleModel, match="the pool offers accuracies"):
        await gateway.run(BATCH, constraints=Constraints(min_accuracy=99.5))


async def test_classify_decodes_on_the_services_cpu_pool_off_the_event_loop(monitor, monkeypatch):
    threads: list[str] = []

    def image_to_tensor(data: bytes, max_pixels: int) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return np.zeros((3, 224, 224), dtype=np.float32)

    monkeypatch.setattr(service_module, "image_to_tensor", image_to_tensor)
    gateway = service(monitor, FakeBackend(POOL_MODELS))
    try:
        await gateway.classify(IMAGES[0].read_bytes(), 5)
    finally:
        gateway.cpu.close()
    assert len(threads) == 1 and threads[0].startswith("gateway-cpu")


async def test_classify_decodes_infers_and_ranks_with_the_labels(monitor):
    outcome, predictions = await service(monitor, FakeBackend(POOL_MODELS)).classify(IMAGES[0].read_bytes(), 3)
    assert outcome.decision.model.name == "resnet18"
    lead = (len("resnet18") * 7) % 1000
    assert predictions[0].index == lead and predictions[0].label == f"class {lead}"
    assert len(predictions) == 3 and predictions[0].score > predictions[1].score >= predictions[2].score
    assert math.isclose(sum(p.score for p in predictions[1:]), 2 * predictions[1].score)  # the rest tie


async def test_the_snapshot_previews_without_moving_the_hysteresis(monitor):
    policy = InterpolationPolicy(POOL, hysteresis=10.0)
    gateway = service(monitor, FakeBackend(POOL_MODELS), policy=policy)
    state_before = policy._last
    snapshot = gateway.snapshot()
    assert isinstance(snapshot, GatewaySnapshot) and policy._last == state_before
    assert snapshot.selected_model == "resnet18" and snapshot.intensity == 300.0
    assert (snapshot.window_low, snapshot.window_high, snapshot.carbon_status) == (100.0, 300.0, "live")
    assert set(snapshot.profiled_joules) == set(POOL_MODELS) and not snapshot.measured


async def test_served_requests_are_charged_to_a_budget_policy_and_the_planner_replans(monitor):
    policy = OnlineBudgetPolicy(POOL, budget_g=1.0)
    gateway = service(monitor, FakeBackend(POOL_MODELS), policy=policy)
    await gateway.run(np.zeros((2, 3, 224, 224), dtype=np.float32))
    assert policy.spent_g == pytest.approx(2 * POOL.by_name["resnet152"].energy_mj / 3.6e9 * 300.0)
    price = Planner(gateway).plan(elapsed_s=1.0)
    assert price is not None and price == policy.price


async def test_a_planned_policy_has_its_first_plan_before_the_first_request(fake_repository):
    """``running`` plans before it yields, not in the background task: the first request must not find the
    policy unplanned (price 0, so the most accurate model) however the event loop schedules the task."""
    settings = settings_for(fake_repository, watch_pool=False, carbon__intensity=250.0, policy__name="error-target")
    async with running(settings, FakeBackend(POOL_MODELS)) as runtime:
        assert runtime.service.policy._last_plan is not None  # no await in between: the task has not run


async def test_a_policy_without_a_plan_is_left_alone(monitor):
    assert Planner(service(monitor, FakeBackend(POOL_MODELS))).plan(elapsed_s=1.0) is None


async def test_readiness_and_weights_follow_the_backend():
    backend = FakeBackend(POOL_MODELS, weights="imagenet1k_v1")
    backend.not_ready = {"resnet50"}
    live, ready = await readiness(backend, POOL)
    assert live and ready == {name: name != "resnet50" for name in POOL_MODELS}
    found = await weights(backend, POOL)
    assert found["resnet50"] == "unknown" and found["resnet18"] == "imagenet1k_v1"
    backend.live = False
    assert await readiness(backend, POOL) == (False, dict.fromkeys(POOL_MODELS, False))
