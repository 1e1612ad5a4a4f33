"""The model repository the builder wrote (built once per session by the ``model_repository`` fixture)."""

import json

import numpy as np
import onnxruntime as ort
import pytest

from gateway.imagenet.labels import load_labels
from gateway.modelzoo.build import BuildError, build_repository
from gateway.pool import load_pool

from tests.support.data import LABELS_FILE, POOL_MODELS

# torchvision's parameter counts: the architectures here must match them exactly.
PARAMETERS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
              "resnet101": 44_549_160, "resnet152": 60_192_808}


def test_architectures_match_torchvision_parameter_counts():
    from gateway.modelzoo.resnet import build_resnet

    assert {n: sum(p.numel() for p in build_resnet(n).parameters()) for n in PARAMETERS} == PARAMETERS


def test_each_model_has_onnx_and_both_triton_configs(model_repository):
    for name in POOL_MODELS:
        model_dir = model_repository / name
        assert (model_dir / "1" / "model.onnx").stat().st_size > 10_000_000
        assert (model_dir / "1" / "model.py").exists()
        gpu = (model_dir / "config.pbtxt").read_text()
        cpu = (model_dir / "configs" / "cpu.pbtxt").read_text()
        assert 'platform: "onnxruntime_onnx"' in gpu and "KIND_GPU" in gpu
        assert 'key: "intra_op_thread_count" value: { string_value: "1" }' in gpu  # no CPU threads to spin
        assert 'backend: "python"' in cpu and "KIND_CPU" in cpu
        python_gpu = (model_dir / "configs" / "python-gpu.pbtxt").read_text()
        assert 'backend: "python"' in python_gpu and "KIND_GPU" in python_gpu and 'string_value: "cuda"' in python_gpu
        for config in (gpu, cpu):
            assert f'name: "{name}"' in config and 'key: "weights"' in config


def test_manifest_records_the_weights(model_repository):
    manifest = json.loads((model_repository / "manifest.json").read_text())
    assert set(manifest["models"]) == set(POOL_MODELS)
    for name, entry in manifest["models"].items():
        assert entry["weights"] in ("random", "imagenet1k_v1")
        config = (model_repository / name / "config.pbtxt").read_text()
        assert f'string_value: "{entry["weights"]}"' in config


def test_onnx_models_have_a_dynamic_batch(model_repository):
    session = ort.InferenceSession(str(model_repository / "resnet18" / "1" / "model.onnx"))
    logits = session.run(["logits"], {"input": np.zeros((3, 3, 224, 224), np.float32)})[0]
    assert logits.shape == (3, 1000)


def test_pool_and_labels_are_written(model_repository):
    pool = load_pool(model_repository / "pool.yaml")
    assert [m.name for m in pool.by_energy] == list(POOL_MODELS)
    assert load_labels(model_repository / "labels.txt") == load_labels(LABELS_FILE)


def test_unknown_model_is_refused(tmp_path):
    with pytest.raises(BuildError, match="unknown model"):
        build_repository(tmp_path, ["resnet9"], labels_file=LABELS_FILE)


def test_pretrained_weights_fail_loudly_offline(tmp_path, monkeypatch):
    import torch

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(BuildError, match="cannot fetch pretrained weights for resnet18"):
        build_repository(tmp_path, ["resnet18"], weights="pretrained", labels_file=LABELS_FILE)


def test_auto_weights_fall_back_to_random_and_say_so(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))
    manifest = build_repository(tmp_path, ["resnet18"], weights="auto", labels_file=LABELS_FILE)
    assert manifest["models"]["resnet18"]["weights"] == "random"
    assert "random weights" in load_pool(tmp_path / "pool.yaml").models[0].notes


def test_the_null_model_has_the_pools_signature_and_costs_nothing(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from gateway.modelzoo.build import build_repository
    from gateway.pool import load_pool

    from tests.support.data import LABELS_FILE

    manifest = build_repository(tmp_path, ["null"], weights="random", labels_file=LABELS_FILE)
    assert manifest["models"]["null"]["weights"] == "null"
    (spec,) = load_pool(tmp_path / "pool.yaml").models
    assert spec.name == "null" and spec.error_rate == 99.5 and spec.energy_mj < 0.01
    config = (tmp_path / "null" / "configs" / "cpu.pbtxt").read_text()
    assert "dims: [ 3, 224, 224 ]" in config and "dims: [ 1000 ]" in config
    session = ort.InferenceSession(str(tmp_path / "null" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    (logits,) = session.run(["logits"], {"input": batch})
    assert logits.shape == (3, 1000) and np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1])  # it reads its input


def _python_backend_model(model_dir, flavour, monkeypatch):
    """The model's ``model.py`` initialised as Triton's python backend would with ``configs/<flavour>.pbtxt``."""
    import importlib.util
    import sys
    import types

    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location(f"{model_dir.name}_model", model_dir / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = text_format.Parse((model_dir / "configs" / f"{flavour}.pbtxt").read_text(), model_config_pb2.ModelConfig())
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
                      "model_repository": str(model_dir), "model_version": "1"})
    return model


def test_the_cpu_models_onnxruntime_threads_do_not_spin(model_repository, monkeypatch):
    """onnxruntime's pool threads spin between runs by default: under load a core of the host, taken from the
    gateway beside it (docs/performance.md). The CPU flavour turns that off, and a config can turn it on."""
    model_dir = model_repository / "resnet18"
    options = _python_backend_model(model_dir, "cpu", monkeypatch).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = model_dir / "configs" / "spinning.pbtxt"
    setting = 'key: "intra_op_spinning" value: {{ string_value: "{}" }}'
    spinning.write_text((model_dir / "configs" / "cpu.pbtxt").read_text().replace(setting.format(0), setting.format(1)))
    try:
        options = _python_backend_model(model_dir, "spinning", monkeypatch).session.get_session_options()
    finally:
        spinning.unlink()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_the_image_model_is_written_only_when_asked_and_then_kept(tmp_path):
    from gateway.modelzoo.build import build_repository

    from tests.support.data import LABELS_FILE

    plain = build_repository(tmp_path, ["null"], weights="random", labels_file=LABELS_FILE)
    assert plain["image_model"] is None and not (tmp_path / "image").exists()  # the NGC container could not load it
    asked = build_repository(tmp_path, ["null"], weights="random", labels_file=LABELS_FILE, image_model=True)
    assert asked["image_model"] == "image"
    for config in ("config.pbtxt", "configs/cpu.pbtxt", "configs/python-gpu.pbtxt"):
        text = (tmp_path / "image" / config).read_text()
        assert 'backend: "python"' in text and "TYPE_STRING" in text and "KIND_CPU" in text
    assert "image_to_tensor" in (tmp_path / "image" / "1" / "model.py").read_text()
    again = build_repository(tmp_path, ["null"], weights="random", labels_file=LABELS_FILE)
    assert again["image_model"] == "image"  # a later build without the flag does not drop it


def test_the_torch_engine_runs_the_same_weights_as_the_onnx_file(tmp_path, monkeypatch):
    """``--torch-weights`` and ``engine: torch`` (the torch-gpu flavour): the python-backend model, loaded as
    Triton would load it but on the CPU, answers what onnxruntime answers for the same model.onnx."""
    build_repository(tmp_path, ["null"], weights="random", labels_file=LABELS_FILE, torch_weights=True)
    model_dir = tmp_path / "null"
    assert (model_dir / "1" / "model.pt").exists()
    torch_gpu = (model_dir / "configs" / "torch-gpu.pbtxt").read_text()
    assert 'string_value: "torch"' in torch_gpu and "KIND_GPU" in torch_gpu
    (model_dir / "configs" / "torch-cpu.pbtxt").write_text(
        torch_gpu.replace("KIND_GPU", "KIND_CPU").replace('string_value: "cuda"', 'string_value: "cpu"'))
    model = _python_backend_model(model_dir, "torch-cpu", monkeypatch)
    batch = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    expected = ort.InferenceSession(str(model_dir / "1" / "model.onnx")).run(["logits"], {"input": batch})[0]
    np.testing.assert_allclose(model._run(batch), expected, rtol=1e-5, atol=1e-5)
