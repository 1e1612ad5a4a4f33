"""Session fixtures: the model repository, built once, and a real ``tritonserver`` serving it; and, for what
does not need a real Triton, the gateway on an in-process ``FakeBackend``."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.modelzoo.build import IMAGE_MODEL
from gateway.testing.processes import running_triton
from tests.support.backend import FakeBackend
from tests.support.data import IMAGES, LABELS_FILE, POOL_MODELS, SHARED_DATA
from tests.support.gateway import gateway_client, settings_for
from tests.support.redis import MISSING, RedisServer, redis_binary

#: The serving tests pin the paper's heuristic, whose choice is a pure function of the intensity and
#: the window, so a test can say which model a request gets. The default policy (``error-target``)
#: chooses by a price it plans over time; tests/policy and tests/rest/test_policies.py test it, and
#: clear this variable where they test the default. Gateway processes the tests start inherit it.
SELECTOR_UNDER_TEST = "interpolation"
os.environ.setdefault("CARBON_GATEWAY_POLICY__NAME", SELECTOR_UNDER_TEST)
#: A gateway's default keeps its policy's account in a file under the working directory; the tests that test a
#: store choose one (tests/state, tests/serving/test_policystate.py), and the others keep none, so that no test
#: writes into the checkout or inherits another's account.
os.environ.setdefault("CARBON_GATEWAY_STATE__URL", "none")


#: Fixtures that start a real tritonserver: a test that uses one, directly or through another fixture, is an
#: integration test, marked as such without saying so.
TRITON_FIXTURES = frozenset({"triton", "own_triton", "small_triton", "explicit_triton"})


def pytest_configure(config) -> None:
    if not IMAGES:
        raise pytest.UsageError(f"no sample images under {SHARED_DATA}/images: the tests read ../shared/data beside "
                                "the project (or set CARBON_GATEWAY_SHARED_DATA)")


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if TRITON_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests read ../shared/data beside the project")
    return SHARED_DATA


@pytest.fixture(scope="session")
def model_repository(shared_data: Path, tmp_path_factory) -> Path:
    """The pool's repository, built once per session in a temporary directory (the checkout's own
    ``model_repository`` is left as ``make run`` built it); offline this means random weights."""
    from gateway.modelzoo.build import build_repository

    repository = tmp_path_factory.mktemp("model-repository")
    build_repository(repository, POOL_MODELS, weights="auto", labels_file=LABELS_FILE, image_model=True)
    return repository


@pytest.fixture(scope="session")
async def triton(model_repository: Path, tmp_path_factory) -> AsyncIterator[Any]:
    """A real tritonserver (the nvidia-pytriton wheel's, CPU, python backend) for the whole session."""
    log_file = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    async with running_triton(model_repository, (*POOL_MODELS, IMAGE_MODEL), log_file) as server:
        yield server


@pytest.fixture
def make_gateway(model_repository: Path, triton) -> Callable[..., Any]:
    """``async with make_gateway(carbon__intensity=120, ...) as client``: a gateway on the session's Triton."""

    def factory(**overrides: Any):
        return gateway_client(settings_for(model_repository, **overrides), triton.grpc_url)

    return factory


@pytest.fixture(scope="session")
def fake_repository(tmp_path_factory) -> Path:
    """The pool file and labels that ``build-models`` writes, without the models: for the ``FakeBackend``."""
    from gateway.modelzoo.build import built_pool
    from gateway.pool import dump_pool

    directory = tmp_path_factory.mktemp("fake-repository")
    dump_pool(built_pool(dict.fromkeys(POOL_MODELS, "random")), directory / "pool.yaml")
    shutil.copy(LABELS_FILE, directory / "labels.txt")
    return directory


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend(POOL_MODELS)


@pytest.fixture
def make_fake_gateway(fake_repository: Path, fake_backend: FakeBackend) -> Callable[..., Any]:
    """``async with make_fake_gateway(carbon__intensity=120, ...) as client``: a gateway on ``fake_backend``."""

    def factory(**overrides: Any):
        return gateway_client(settings_for(fake_repository, **overrides), fake_backend)

    return factory


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of its own for the test (the stores' and the fleet's tests)."""
    if redis_binary() is None:
        pytest.skip(MISSING)
    with RedisServer(tmp_path / "redis") as server:
        yield server
