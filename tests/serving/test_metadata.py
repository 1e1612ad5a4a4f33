"""What the protocol says about the pool and ``auto``; a pool whose models disagree on their signature is refused."""

import pytest

from gateway.errors import InvalidVersion, ConfigError, TritonError, UnknownModel
from gateway.modelzoo.build import built_pool
from gateway.serving import metadata
from tests.support.backend import FakeBackend

from tests.support.data import POOL_MODELS

POOL = built_pool(dict.fromkeys(POOL_MODELS, "random"))


class OddOneOut(FakeBackend):
    """resnet50 takes 299x299 images: a pool that cannot share one signature."""

    async def model_metadata(self, name, version=""):
        found = await super().model_metadata(name, version)
        if name == "resnet50":
            found["inputs"] = [{**found["inputs"][0], "shape": [-1, 3, 299, 299]}]
        return found


async def test_auto_is_described_by_the_signature_the_pool_shares():
    described = await metadata.model_metadata(FakeBackend(POOL_MODELS), POOL, "auto")
    assert described["name"] == "auto" and described["versions"] == ["1"]
    assert described["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    io = await metadata.shared_signature(FakeBackend(POOL_MODELS), POOL)
    assert (io.input_name, io.input_datatype, io.input_dims, io.output_name) == ("input", "FP32", (3, 224, 224),
                                                                                 "logits")


async def test_a_pool_whose_models_differ_is_refused_naming_them():
    with pytest.raises(ConfigError, match=r"\['resnet50'\] have other inputs or outputs"):
        await metadata.shared_signature(OddOneOut(POOL_MODELS), POOL)


async def test_a_model_that_is_down_does_not_hide_the_signature_but_all_down_is_an_error():
    backend = FakeBackend(POOL_MODELS)
    backend.not_ready = {"resnet18", "resnet34"}
    assert (await metadata.shared_signature(backend, POOL)).input_dims == (3, 224, 224)
    backend.not_ready = set(POOL_MODELS)
    with pytest.raises(TritonError):
        await metadata.shared_signature(backend, POOL)


async def test_names_and_versions_resolve_or_are_unknown():
    assert metadata.resolve(POOL, "auto", None) is None and metadata.resolve(POOL, "auto", "1") is None
    assert metadata.resolve(POOL, "resnet34", "2").name == "resnet34"  # the backend says whether version 2 exists
    for name, version in (("vgg16", None), ("auto", "2")):
        with pytest.raises(UnknownModel):
            metadata.resolve(POOL, name, version)


async def test_readiness_config_index_and_statistics():
    backend = FakeBackend(POOL_MODELS)
    backend.not_ready = {"resnet18"}
    assert not await metadata.model_ready(backend, POOL, "resnet18")
    assert await metadata.model_ready(backend, POOL, "auto")  # another model can serve
    config = await metadata.model_config(backend, POOL, "auto")
    assert config["name"] == "auto" and config["max_batch_size"] == 8
    index = {entry["name"]: entry["state"] for entry in await metadata.repository_index(backend, POOL)}
    assert index["resnet18"] == "UNAVAILABLE" and index["resnet50"] == "READY" and index["auto"] == "READY"
    stats = await metadata.model_statistics(backend, POOL)
    assert [entry["name"] for entry in stats["model_stats"]] == [m for m in POOL_MODELS if m != "resnet18"]


@pytest.mark.parametrize("version", ["1abc", "01x", " 1", "1" * 20, "-1", "1.0", "²"])
def test_a_version_must_be_a_plain_decimal_number(version):
    with pytest.raises(InvalidVersion, match="plain decimal"):
        metadata.resolve(POOL, "resnet34", version)
    assert metadata.resolve(POOL, "resnet34", "7").name == "resnet34"  # whether 7 exists is the backend's to say


def test_what_the_client_sent_is_quoted_short():
    with pytest.raises(UnknownModel) as caught:
        metadata.resolve(POOL, "m" * 1_000_000, None)
    assert len(str(caught.value)) < 300 and "more characters" in str(caught.value)
    with pytest.raises(InvalidVersion) as caught:
        metadata.resolve(POOL, "resnet34", "1" + "x" * 1_000_000)
    assert len(str(caught.value)) < 300
