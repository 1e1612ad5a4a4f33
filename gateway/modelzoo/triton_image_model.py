"""Triton python-backend model ``image``: decodes uploads inside Triton and runs them through a pool model.

Copied as ``model.py`` into ``image/1`` by ``carbon-gateway build-models --image-model``. With
``triton.image_model: image`` the gateway sends ``/v1/classify`` uploads here as they arrived (input
``IMAGE``, BYTES) and names the model its policy chose in the request's parameters (``model``,
``version``, ``input``, ``output``, and its pixel limit ``max_pixels``). This model decodes and
preprocesses with the gateway's own code (``gateway.imagenet.decode``, so the same pixels and top-5), then
calls that model through Triton's business-logic scripting (BLS), one call per model for everything
the dynamic batcher handed over, so the ResNet's own batcher still sees batches.

Decoding then scales with this model's instances and threads instead of the gateway's CPU. It needs the
``gateway`` package where Triton's python runs (the local Triton that ``carbon-gateway serve`` starts
uses the gateway's own environment).

A bad upload (or bad parameters) fails its request alone, with ``INVALID_ARG``. For an upload the message
starts with the gateway's error code (``unsupported_image: ...``), and the gateway raises that error again
with its usual status.
"""

import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import triton_python_backend_utils as pb_utils

from gateway.imagenet.decode import image_error_message, image_to_tensor


class BadParameters(ValueError):
    """The request's parameters do not say which model to run, or how."""


class Target(NamedTuple):
    """Where a request's image goes, from its parameters."""

    model: str
    version: int  # -1: the latest
    input_name: str
    output_name: str
    max_pixels: int

    @classmethod
    def of(cls, request):
        try:
            given = json.loads(request.parameters() or "{}")
            version = str(given.get("version", "") or "-1")
            if not given.get("model") or not version.lstrip("-").isdigit():
                raise ValueError("no model named")
            return cls(str(given["model"]), int(version), str(given.get("input", "input")),
                       str(given.get("output", "logits")), int(given.get("max_pixels", 40_000_000)))
        except (ValueError, TypeError) as exc:
            raise BadParameters("image: the request must name its model (parameter `model`) and may give a numeric "
                                f"`version` and `max_pixels` ({exc})") from exc


def _run_now(function, *args):
    """``function(*args)`` as a finished future, as the pool would hand it back."""
    future = Future()
    try:
        future.set_result(function(*args))
    except Exception as exc:  # noqa: BLE001 - handed back to the caller, as the pool does
        future.set_exception(exc)
    return future


def _refused(message):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.output_name = config["output"][0]["name"]
        threads = int(parameters.get("decode_threads", "0") or 0) or len(os.sched_getaffinity(0))
        # Pillow releases the GIL while it decodes and resamples: a batch's images decode side by side.
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")

    def finalize(self):
        self.pool.shutdown(wait=False, cancel_futures=True)

    def execute(self, requests):
        responses = [None] * len(requests)
        jobs = []  # (position, target, upload)
        for position, request in enumerate(requests):
            try:
                target = Target.of(request)
            except BadParameters as exc:
                responses[position] = _refused(str(exc))
                continue
            upload = bytes(pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy().reshape(-1)[0])
            jobs.append((position, target, upload))
        if len(jobs) == 1:  # nothing to decode beside it: no hand-off to a thread
            decoded = [_run_now(image_to_tensor, jobs[0][2], jobs[0][1].max_pixels)]
        else:
            decoded = [self.pool.submit(image_to_tensor, upload, target.max_pixels) for _, target, upload in jobs]
        groups = {}  # (model, version, input, output) -> [(position, tensor)]
        for (position, target, _), future in zip(jobs, decoded, strict=True):
            try:
                tensor = future.result()
            except Exception as exc:  # noqa: BLE001 - one request's failure must not fail the batch
                message = image_error_message(exc)
                responses[position] = _refused(message) if message else pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"image: {exc!r}", pb_utils.TritonError.INTERNAL))
                continue
            groups.setdefault(target[:4], []).append((position, tensor))
        for (model, version, input_name, output_name), members in groups.items():
            positions, tensors = zip(*members, strict=True)
            answers = self._run(model, version, input_name, output_name, tensors)
            for position, answer in zip(positions, answers, strict=True):
                responses[position] = answer
        return responses

    def _run(self, model, version, input_name, output_name, tensors):
        """One BLS call for ``tensors`` on ``model``: a response per tensor (the call's error for each if it failed)."""
        request = pb_utils.InferenceRequest(
            model_name=model, model_version=version,
            inputs=[pb_utils.Tensor(input_name, np.stack(tensors))], requested_output_names=[output_name])
        answer = request.exec()
        if answer.has_error():
            return [pb_utils.InferenceResponse(error=answer.error()) for _ in tensors]
        outputs = pb_utils.get_output_tensor_by_name(answer, output_name).as_numpy()
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, outputs[i:i + 1])])
                for i in range(len(tensors))]
