"""Triton python-backend model: runs the ONNX file next to it with onnxruntime on the CPU.

Copied as ``model.py`` into each model version by ``carbon-gateway build-models``; it is what the
CPU Triton (the nvidia-pytriton wheel, which has only the python backend) loads, selected with
``--model-config-name=cpu`` (``python-gpu``: the same on the GPU, through onnxruntime's CUDA provider).
On the NGC Triton the default ``config.pbtxt`` serves the same ``model.onnx`` with the onnxruntime
backend instead, and this file is ignored.

``engine: torch`` (the ``torch-gpu`` flavour) runs PyTorch instead, on the weights that
``build-models --torch-weights`` saves as ``model.pt`` beside the ONNX file: a GPU host whose python has a
CUDA build of torch but no onnxruntime-gpu. It builds the architecture with the ``gateway`` package, which
must be importable in Triton's python (as for the ``image`` model).
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        directory = os.path.join(args["model_repository"], args["model_version"])
        device = int(args.get("model_instance_device_id", "0") or 0)
        if parameters.get("engine") == "torch":
            self._run = self._torch_runner(directory, parameters, device)
            return
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0") or 0)
        # onnxruntime's pool threads spin after each run by default: a core kept busy between requests,
        # taken from the gateway and anything else on the host. "1" trades that core for a little latency.
        options.add_session_config_entry("session.intra_op.allow_spinning", parameters.get("intra_op_spinning", "0"))
        path = os.path.join(directory, "model.onnx")
        providers = ["CPUExecutionProvider"]
        if parameters.get("device") == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("configs/python-gpu.pbtxt needs onnxruntime-gpu (no CUDAExecutionProvider)")
            providers = [("CUDAExecutionProvider", {"device_id": device})]
        self.session = ort.InferenceSession(path, options, providers=providers)
        self._run = lambda batch: self.session.run([self.output_name], {self.input_name: batch})[0]

    @staticmethod
    def _torch_runner(directory, parameters, device_id):
        import torch
        from gateway.modelzoo import null
        from gateway.modelzoo.resnet import build_resnet

        architecture = parameters["architecture"]
        net = null.NullNet() if architecture == null.NAME else build_resnet(architecture)
        net.load_state_dict(torch.load(os.path.join(directory, "model.pt"), map_location="cpu", weights_only=True))
        device = torch.device(f"cuda:{device_id}" if parameters.get("device") == "cuda" else "cpu")
        net = net.to(device).eval()

        def run(batch):
            with torch.inference_mode():
                return net(torch.from_numpy(batch).to(device)).cpu().numpy()

        return run

    def execute(self, requests):
        # One onnxruntime run for everything Triton's dynamic batcher handed over.
        batches = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        outputs = self._run(np.concatenate(batches))
        splits = np.cumsum([len(b) for b in batches])[:-1]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, np.ascontiguousarray(part))])
            for part in np.split(outputs, splits)
        ]
