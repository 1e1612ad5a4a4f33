"""``TensorSignature``: a model's one input and one output, the only description of tensors in the gateway.

The backend reads it from a model's configuration; a pool's shared one describes ``auto``; the codecs check
requests against it; and the protocol's model metadata is written from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TensorSignature:
    """A model's one input and one output, as its server configures them (dims without the batch dimension)."""

    input_name: str
    input_datatype: str
    input_dims: tuple[int, ...]
    output_name: str
    output_datatype: str = "FP32"
    output_dims: tuple[int, ...] = ()
    max_batch_size: int = 0
    parameters: Mapping[str, str] = field(default_factory=dict)

    @property
    def tensors(self) -> tuple[str, str, tuple[int, ...], str, str, tuple[int, ...]]:
        """What a request and a response must match: names, datatypes and dims, not batch size or parameters."""
        return (self.input_name, self.input_datatype, self.input_dims, self.output_name, self.output_datatype,
                self.output_dims)

    def metadata(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The protocol's ``inputs`` and ``outputs`` metadata entries (a batched model's shapes start at -1)."""
        return ([{"name": self.input_name, "datatype": self.input_datatype, "shape": [-1, *self.input_dims]}],
                [{"name": self.output_name, "datatype": self.output_datatype, "shape": [-1, *self.output_dims]}])

    @classmethod
    def from_metadata(cls, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> TensorSignature:
        """From a model's metadata entries, which must hold one input and one output."""
        first_input, first_output = inputs[0], outputs[0]
        return cls(input_name=str(first_input["name"]), input_datatype=str(first_input["datatype"]),
                   input_dims=tuple(int(d) for d in first_input["shape"][1:]),
                   output_name=str(first_output["name"]), output_datatype=str(first_output["datatype"]),
                   output_dims=tuple(int(d) for d in first_output["shape"][1:]))


#: The pool's signature: an ImageNet ResNet's ``[N, 3, 224, 224]`` FP32 in, ``[N, 1000]`` logits out.
RESNET = TensorSignature(input_name="input", input_datatype="FP32", input_dims=(3, 224, 224), output_name="logits",
                         output_datatype="FP32", output_dims=(1000,))
