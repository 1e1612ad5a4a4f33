from pathlib import Path

import pytest

from gateway.modelzoo.build import PAPER_POOL
from gateway.pool import PoolError, dump_pool, load_pool


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pool.yaml"
    path.write_text(text)
    return path


def test_paper_pool_holds_table_1():
    pool = load_pool(PAPER_POOL)
    assert [(m.name, m.energy_mj, m.error_rate) for m in pool.by_energy] == [
        ("resnet34", 359.9321833, 8.58), ("resnet50", 420.6213298, 7.138),
        ("resnet101", 803.0948846, 6.454), ("resnet152", 1238.147188, 5.954)]
    assert pool.error_metric == "top5"


def test_round_trip(tmp_path):
    pool = load_pool(PAPER_POOL)
    dump_pool(pool, tmp_path / "copy.yaml")
    assert load_pool(tmp_path / "copy.yaml") == pool


def test_triton_name_defaults_to_name(tmp_path):
    pool = load_pool(write(tmp_path, "models:\n  - {name: a, energy_mj: 1, error_rate: 2}\n"
                                     "  - {name: b, triton_name: b_onnx, energy_mj: 2, error_rate: 1}\n"))
    assert [m.backend_name for m in pool.models] == ["a", "b_onnx"]


@pytest.mark.parametrize("text, message", [
    ("models: []\n", "models"),
    ("models:\n  - {name: a, energy_mj: 1, error_rate: 2}\n  - {name: a, energy_mj: 2, error_rate: 1}\n",
     "duplicate model name 'a'"),
    ("models:\n  - {name: r50, energy_mj: 0, error_rate: 2}\n", "model 'r50' field energy_mj"),
    ("models:\n  - {name: r50, energy_mj: -3, error_rate: 2}\n", "greater than 0"),
    ("models:\n  - {name: r50, energy_mj: 3, error_rate: 120}\n", "model 'r50' field error_rate"),
    ("models:\n  - {name: r50, energy_mj: 3}\n", "model 'r50' field error_rate: Field required"),
    ("models:\n  - {name: r50, energy_mj: 3, error_rate: 1, colour: red}\n", "model 'r50' field colour"),
    ("just a string\n", "must hold a mapping"),
    ("models: [\n", "not valid YAML"),
])
def test_invalid_pools_are_refused_with_a_precise_message(tmp_path, text, message):
    with pytest.raises(PoolError) as caught:
        load_pool(write(tmp_path, text))
    assert message in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(PoolError, match="cannot read pool file"):
        load_pool(tmp_path / "absent.yaml")


def test_shipped_pools_load_and_order_by_model_size():
    pools_dir = PAPER_POOL.parent
    shipped = {path.name: load_pool(path) for path in sorted(pools_dir.glob("*.yaml"))}
    assert {"paper-v100.yaml", "resnet-cpu-2core.yaml"} <= set(shipped)
    cpu = shipped["resnet-cpu-2core.yaml"]
    assert [m.name for m in cpu.by_energy] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert all(m.latency_ms and m.energy_source.startswith("profiled: estimate") for m in cpu.models)
