"""Session fixtures: the model repository, built once, and a real ``tritonserver`` serving it; and, for what
does not need a real Triton, the gateway on an in-process ``FakeBackend``."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.modelzoo.build import IMAGE_MODEL
from gateway.serving.backend import InferenceBackend
from gateway.server import GatewayServer
from gateway.settings import GatewaySettings, load_settings
from tests.support.backend import FakeBackend
from tests.support.processes import free_port, running_triton  # noqa: F401 - free_port is re-exported for the tests

PROJECT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CARBON_GATEWAY_SHARED_DATA", PROJECT.parent / "shared" / "data"))
IMAGES = sorted((SHARED_DATA / "images").glob("*.JPEG"))
LABELS_FILE = SHARED_DATA / "imagenet_classes.txt"
POOL_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
#: The serving tests pin the paper's heuristic, whose choice is a pure function of the intensity and
#: the window, so a test can say which model a request gets. The default policy (``error-target``)
#: chooses by a price it plans over time; tests/policy and tests/api/test_policies.py test it, and
#: clear this variable where they test the default. Gateway processes the tests start inherit it.
SELECTOR_UNDER_TEST = "interpolation"
os.environ.setdefault("CARBON_GATEWAY_POLICY__NAME", SELECTOR_UNDER_TEST)


def pytest_configure(config) -> None:
    if not IMAGES:
        raise pytest.UsageError(f"no sample images under {SHARED_DATA}/images: the tests read ../shared/data beside "
                                "the project (or set CARBON_GATEWAY_SHARED_DATA)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"{SHARED_DATA} is missing: the tests read ../shared/data beside the project")
    return SHARED_DATA


@pytest.fixture(scope="session")
def model_repository(shared_data: Path) -> Path:
    """The project's repository, built (or completed) once; offline this means random weights."""
    from gateway.modelzoo.build import build_repository

    repository = PROJECT / "model_repository"
    build_repository(repository, POOL_MODELS, weights="auto", labels_file=LABELS_FILE, image_model=True)
    return repository


@pytest.fixture(scope="session")
async def triton(model_repository: Path, tmp_path_factory) -> AsyncIterator[Any]:
    """A real tritonserver (the nvidia-pytriton wheel's, CPU, python backend) for the whole session."""
    log_file = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    async with running_triton(model_repository, (*POOL_MODELS, IMAGE_MODEL), log_file) as server:
        yield server


def settings_for(model_repository: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {"triton": {"model_repository": str(model_repository)}}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        target = values
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return load_settings(None, values)


@asynccontextmanager
async def gateway_client(settings: GatewaySettings,
                         backend: str | InferenceBackend) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with its lifespan running, reached in-process over ASGI; ``backend``: a Triton's
    gRPC address, or an ``InferenceBackend``."""
    async with GatewayServer(settings, backend) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


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


def pids_that_served(multiproc_dir: Path) -> set[str]:
    """The processes whose multiprocess metric files count a served request (gateway workers, not a sampler)."""
    from prometheus_client.mmap_dict import MmapedDict

    pids = set()
    for path in multiproc_dir.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            if '"carbon_gateway_requests_total"' in key and value > 0:
                pids.add(path.stem.rsplit("_", 1)[-1])
    return pids


class ManualClock:
    """A clock that only moves when a test sets ``now``: pass it wherever the code takes ``clock=``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def encode(image, fmt: str, **options) -> bytes:
    """A PIL image saved in ``fmt`` (JPEG, PNG, WEBP, GIF, ...), as bytes."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes = b"") -> bytes:
    """A PNG written by hand, so its header can say anything."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))
