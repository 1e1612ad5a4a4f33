"""Build the Triton model repository: the ResNet pool as ONNX, configured for GPU and CPU Triton.

Each model gets ``<name>/1/model.onnx`` and two configurations:

- ``config.pbtxt``: the onnxruntime backend on the GPU (the NGC Triton container);
- ``configs/cpu.pbtxt``: the python backend running the same ONNX file with onnxruntime on the CPU
  (the ``nvidia-pytriton`` wheel's server, which has only the python backend), chosen with
  ``tritonserver --model-config-name=cpu``.

So one repository serves both flavours. Beside the models: ``labels.txt``, ``pool.yaml`` (the
pool for the gateway) and ``manifest.json`` (what was built, and with which weights).

With ``image_model``, also ``image``: a python-backend model that decodes uploads inside Triton and hands
them to a pool model (``triton.image_model: image``; ``triton_image_model.py``). It runs the ``gateway``
package in Triton's python, so it is left out unless asked for: the NGC container has no gateway.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, UTC
from pathlib import Path
from typing import Literal

from ..errors import BuildError, LabelsError
from ..imagenet.labels import load_labels, torchvision_labels
from ..pool import ModelPool, ModelSpec, dump_pool
from . import null
from .resnet import RESNETS, build_resnet

logger = logging.getLogger(__name__)

WeightsChoice = Literal["auto", "pretrained", "random"]
DEFAULT_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
INPUT_NAME, OUTPUT_NAME = "input", "logits"
IMAGE_MODEL = "image"
MAX_BATCH_SIZE = 8
PAPER_POOL = Path(__file__).resolve().parent.parent / "pools" / "paper-v100.yaml"


def _load_weights(name: str, choice: WeightsChoice):
    """Build the model; returns it and the weights it got ("imagenet1k_v1", "random", or "null")."""
    import torch

    if name == null.NAME:
        return null.NullNet(), "null"
    model = build_resnet(name)
    if choice == "random":
        return model, "random"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        state = torch.hub.load_state_dict_from_url(RESNETS[name].weights_url, progress=False, check_hash=True)
    except Exception as exc:  # any failure to fetch means no pretrained weights here
        if choice == "pretrained":
            raise BuildError(f"cannot fetch pretrained weights for {name}: {exc}") from exc
        logger.warning("%s: pretrained weights unavailable (%s); using random weights", name, exc)
        return model, "random"
    finally:
        socket.setdefaulttimeout(previous)
    model.load_state_dict(state, strict=True)
    return model, "imagenet1k_v1"


def _save_torch_weights(model, path: Path) -> None:
    """The same weights as the ONNX file, for the ``torch-gpu`` flavour (``engine: torch``)."""
    import torch

    torch.save(model.state_dict(), path)


def _export_onnx(model, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: it needs no onnxscript and gives a dynamic batch axis simply.
        torch.onnx.export(
            model, (torch.zeros(1, 3, 224, 224),), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=17, dynamo=False,
        )


#: Triton configurations written per model: ``config.pbtxt`` (default) and ``configs/<name>.pbtxt``.
FLAVOURS = {
    # Triton's onnxruntime backend has no setting for onnxruntime's spinning threads. One intra-op thread
    # means no pool to spin, and on the GPU that thread only launches the CUDA provider's kernels.
    "gpu": ('platform: "onnxruntime_onnx"\ninstance_group [ { count: 1, kind: KIND_GPU } ]\n'
            'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }'),
    "cpu": ('backend: "python"\ninstance_group [ { count: 1, kind: KIND_CPU } ]\n'
            'parameters { key: "intra_op_threads" value: { string_value: "0" } }\n'
            'parameters { key: "intra_op_spinning" value: { string_value: "0" } }'),
    # The python backend with onnxruntime's CUDA provider: the GPU without the NGC container, e.g. the
    # nvidia-pytriton wheel's server plus onnxruntime-gpu on a bare GPU host.
    "python-gpu": ('backend: "python"\ninstance_group [ { count: 1, kind: KIND_GPU } ]\n'
                   'parameters { key: "device" value: { string_value: "cuda" } }'),
    # The python backend with PyTorch on the GPU (model.pt, written by --torch-weights): a GPU host with a
    # CUDA build of torch and no onnxruntime-gpu.
    "torch-gpu": ('backend: "python"\ninstance_group [ { count: 1, kind: KIND_GPU } ]\n'
                  'parameters { key: "device" value: { string_value: "cuda" } }\n'
                  'parameters { key: "engine" value: { string_value: "torch" } }'),
}


def _config(name: str, weights: str, flavour: str) -> str:
    runtime = FLAVOURS[flavour]
    return f"""name: "{name}"
{runtime}
max_batch_size: {MAX_BATCH_SIZE}
input [ {{ name: "{INPUT_NAME}", data_type: TYPE_FP32, dims: [ 3, 224, 224 ] }} ]
output [ {{ name: "{OUTPUT_NAME}", data_type: TYPE_FP32, dims: [ 1000 ] }} ]
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
parameters {{ key: "weights" value: {{ string_value: "{weights}" }} }}
parameters {{ key: "architecture" value: {{ string_value: "{name}" }} }}
"""


def _write_configs(repository: Path, name: str, weights: str) -> None:
    """Every flavour's configuration and the python-backend model: cheap, so rewritten on each build."""
    model_dir = repository / name
    (model_dir / "configs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("triton_python_model.py"), model_dir / "1" / "model.py")
    (model_dir / "config.pbtxt").write_text(_config(name, weights, "gpu"))
    for flavour in FLAVOURS.keys() - {"gpu"}:
        (model_dir / "configs" / f"{flavour}.pbtxt").write_text(_config(name, weights, flavour))


def _image_config() -> str:
    # Decoding is CPU work whatever the flavour; the models it calls run where their own configs say. No
    # queue delay: requests that queue while an instance decodes are batched anyway. Two instances, so one
    # decodes while the other waits for its model (on 2 cores: 412 against 375 images/s at c=8).
    return f"""name: "{IMAGE_MODEL}"
backend: "python"
max_batch_size: {MAX_BATCH_SIZE}
input [ {{ name: "IMAGE", data_type: TYPE_STRING, dims: [ 1 ] }} ]
output [ {{ name: "{OUTPUT_NAME}", data_type: TYPE_FP32, dims: [ -1 ] }} ]
instance_group [ {{ count: 2, kind: KIND_CPU }} ]
dynamic_batching {{ }}
parameters {{ key: "decode_threads" value: {{ string_value: "0" }} }}
"""


def write_image_model(repository: Path) -> None:
    """The ``image`` model: its code, and the same configuration for every flavour (``decode_threads`` 0: one
    per core, in each instance)."""
    model_dir = repository / IMAGE_MODEL
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "configs").mkdir(exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("triton_image_model.py"), model_dir / "1" / "model.py")
    config = _image_config()
    (model_dir / "config.pbtxt").write_text(config)
    for flavour in FLAVOURS.keys() - {"gpu"}:
        (model_dir / "configs" / f"{flavour}.pbtxt").write_text(config)


def _labels(labels_file: Path | None) -> tuple[str, ...]:
    if labels_file is not None:
        return load_labels(labels_file)
    names = torchvision_labels()
    if names is None:
        raise LabelsError("torchvision is not importable here: pass --labels with the 1000 ImageNet class names "
                          "(e.g. ../shared/data/imagenet_classes.txt)")
    return names


def built_pool(built: dict[str, str]) -> ModelPool:
    """The pool for what was built: Table 1's V100 energies where the paper has them.

    ResNet18 is not in Table 1: its energy is ResNet34's figure scaled by their FLOPs, and says so.
    ``carbon-gateway profile`` replaces all of them with figures measured on the serving hardware.
    """
    from ..pool import load_pool

    paper = load_pool(PAPER_POOL)
    specs = []
    for name, weights in built.items():
        if name == null.NAME:
            specs.append(ModelSpec(name=name, energy_mj=0.001, error_rate=null.TOP5_ERROR,
                                   energy_source="null model: no real inference", notes=null.__doc__.split("\n")[0]))
            continue
        arch = RESNETS[name]
        error = round(100.0 - arch.acc5, 3)
        note = "" if weights != "random" else (
            "random weights: error_rate is the architecture's with ImageNet weights; these weights are at chance")
        if (known := paper.get(name)) is not None:
            energy, source = known.energy_mj, known.energy_source
        else:
            reference = paper.by_name["resnet34"]
            energy = reference.energy_mj * arch.gflops / RESNETS["resnet34"].gflops
            source = "estimate: paper Table 1 ResNet34 (V100) scaled by GFLOPs"
        specs.append(ModelSpec(name=name, energy_mj=round(energy, 4), error_rate=error,
                               energy_source=source, notes=note))
    return ModelPool(name="built-resnets", hardware="energy: NVIDIA V100 figures of the paper until profiled",
                     error_metric="top5", models=tuple(specs))


def build_repository(output: Path, models: Sequence[str] = DEFAULT_MODELS, weights: WeightsChoice = "auto",
                     labels_file: Path | None = None, force: bool = False, image_model: bool = False,
                     torch_weights: bool = False, progress: Callable[[str], None] = lambda message: None) -> dict:
    """Build (or complete) the repository; returns the manifest it wrote.

    ``image_model``: also write the ``image`` model (Triton-side decoding); one written before is kept.
    ``torch_weights``: also save each model's weights as ``model.pt``, for the ``torch-gpu`` flavour.
    """
    unknown = [m for m in models if m not in RESNETS and m != null.NAME]
    if unknown:
        raise BuildError(f"unknown model(s) {unknown}; known: {sorted(RESNETS)} and {null.NAME} (the null model)")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    labels = _labels(labels_file)
    manifest_path = output / "manifest.json"
    previous = json.loads(manifest_path.read_text()).get("models", {}) if manifest_path.exists() else {}
    built: dict[str, str] = {}
    for position, name in enumerate(models, start=1):
        done = previous.get(name)
        if (not force and done and (output / name / "1" / "model.onnx").exists()
                and (not torch_weights or (output / name / "1" / "model.pt").exists())
                and (weights == "auto" or name == null.NAME or done["weights"] == _weights_label(weights))):
            progress(f"[{position}/{len(models)}] {name}: already built ({done['weights']} weights)")
            built[name] = done["weights"]
            _write_configs(output, name, done["weights"])
            continue
        progress(f"[{position}/{len(models)}] {name}: building")
        model, got = _load_weights(name, weights)
        _export_onnx(model, output / name / "1" / "model.onnx")
        if torch_weights:
            _save_torch_weights(model, output / name / "1" / "model.pt")
        _write_configs(output, name, got)
        built[name] = got
        progress(f"[{position}/{len(models)}] {name}: exported with {got} weights")
    image_model = image_model or (output / IMAGE_MODEL / "1" / "model.py").exists()
    if image_model:
        write_image_model(output)
        progress(f"{IMAGE_MODEL}: decodes uploads in Triton (set triton.image_model: image)")
    (output / "labels.txt").write_text("\n".join(labels) + "\n")
    dump_pool(built_pool(built), output / "pool.yaml")
    manifest = {
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": {name: {"weights": got, "file": f"{name}/1/model.onnx"} for name, got in built.items()},
        "flavours": {"gpu": "config.pbtxt (onnxruntime backend, KIND_GPU)",
                     "cpu": "configs/cpu.pbtxt (python backend + onnxruntime), --model-config-name=cpu",
                     "python-gpu": "configs/python-gpu.pbtxt (python backend + onnxruntime CUDA provider), "
                                   "--model-config-name=python-gpu",
                     "torch-gpu": "configs/torch-gpu.pbtxt (python backend + PyTorch CUDA, model.pt from "
                                  "--torch-weights), --model-config-name=torch-gpu"},
        "image_model": IMAGE_MODEL if image_model else None,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _weights_label(choice: WeightsChoice) -> str:
    return "imagenet1k_v1" if choice == "pretrained" else "random"


def build_and_report(output: Path, models: Sequence[str], weights: str, labels_file: Path | None,
                     force: bool = False, image_model: bool = False, torch_weights: bool = False) -> dict:
    """``carbon-gateway build-models``: build with progress lines, then say which weights were built."""
    import typer

    if weights not in ("auto", "pretrained", "random"):
        raise BuildError("--weights must be auto, pretrained or random")
    manifest = build_repository(output, models, weights, labels_file, force=force,  # type: ignore[arg-type]
                                image_model=image_model, torch_weights=torch_weights, progress=typer.echo)
    kinds = sorted({entry["weights"] for entry in manifest["models"].values()})
    typer.echo(f"built {len(manifest['models'])} models in {output} with {' and '.join(kinds)} weights")
    if "random" in kinds:
        typer.secho("note: random weights classify at chance; on a connected machine "
                    "`carbon-gateway build-models --weights pretrained --force` gets ImageNet weights",
                    fg=typer.colors.YELLOW)
    return manifest
