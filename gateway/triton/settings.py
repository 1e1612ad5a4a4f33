"""The ``triton`` section of the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_REPOSITORY = Path("model_repository")


class TritonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, description="host:port of an existing Triton's gRPC endpoint. "
                            "Unset: start a local Triton on the model repository.")
    model_repository: Path = DEFAULT_REPOSITORY
    model_config_name: str = Field(default="cpu", description="Local Triton: which configs/<name>.pbtxt to load "
                                   "(cpu; python-gpu on a GPU host with onnxruntime-gpu).")
    grpc_port: int = Field(default=8001, ge=1, le=65535, description="gRPC port of the local Triton.")
    http_port: int = Field(default=8000, ge=1, le=65535)
    metrics_port: int = Field(default=8002, ge=1, le=65535)
    model_control: Literal["none", "explicit"] = Field(
        default="none", description="explicit: the gateway loads models a new pool adds and unloads those it drops "
        "(the local Triton is then started in explicit mode with the pool's models).")
    startup_timeout_s: float = Field(default=300.0, gt=0)
    request_timeout_s: float = Field(default=30.0, gt=0)
