"""Response and request payloads of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class PredictionOut(BaseModel):
    index: int = Field(description="ImageNet class index.")
    label: str
    score: float = Field(description="Softmax probability.")


class CarbonOut(BaseModel):
    intensity: float = Field(description="Carbon intensity used for the decision, in `unit`.")
    unit: str = Field(description="`gCO2eq/kWh`, or `percentile` for WattTime's marginal signal index.")
    source: str
    timestamp: datetime
    age_seconds: float
    window_low: float = Field(description="C_low of the selector's window.")
    window_high: float = Field(description="C_high of the selector's window.")
    window_basis: str = Field(description="`history` or `forecast`: where the window comes from.")
    status: str = Field(description="`live`, `stale` (source down, last good value), `forecast` or `default`.")
    stale: bool = False
    source_up: bool = True
    last_error: str | None = None


class EnergyOut(BaseModel):
    joules: float = Field(description="Energy charged to this request.")
    source: str = Field(description="How it is known: a meter name, or `pool-estimate`.")
    measured: bool
    co2_grams: float | None = Field(description="energy x carbon intensity x PUE; null when the carbon source "
                                    "gives no gCO2/kWh (WattTime's marginal percentile).")


class ModelChoice(BaseModel):
    name: str
    triton_name: str
    weights: str = Field(description="`imagenet1k_v1`, `random`, or `unknown`.")
    expected_error_rate: float = Field(description="Percent, per the pool file.")
    error_metric: str
    energy_mj_per_inference: float
    selected_by: str = Field(description="The policy that chose it, `client` when pinned, `fallback:<policy>` "
                             "when the policy's choice was not ready.")
    fallback_from: str | None = Field(default=None, description="The policy's choice, when another model stood in.")


class ClassifyResponse(BaseModel):
    model: ModelChoice
    predictions: list[PredictionOut]
    carbon: CarbonOut
    energy: EnergyOut
    latency_ms: float


class ErrorResponse(BaseModel):
    error: str = Field(description="A stable error code.")
    detail: str


class ModelStatus(BaseModel):
    name: str
    triton_name: str
    ready: bool
    weights: str
    energy_mj: float
    error_rate: float
    energy_source: str


class ReadyResponse(BaseModel):
    ready: bool
    triton_url: str
    triton_reachable: bool
    models: list[ModelStatus]
    carbon: CarbonOut
    policy: str
    energy_meter: str = Field(description="What measures energy: a meter name, or `pool-estimate`.")
    energy_meter_up: bool = Field(description="Whether the meter answered its last reading (for a worker of "
                                  "several: whether it reaches the parent's sampler). Serving goes on either way.")
    policy_history_hours: float | None = Field(default=None, description="Hours of observed intensity the policy "
                                               "plans with (a policy that plans over a period).")
    policy_state_store: str = Field(default="none", description="The policy's state store: up, down (serving "
                                    "goes on, on this process's own account), unknown, or none.")


class StateStoreOut(BaseModel):
    url: str = Field(description="Where the fleet's account is kept (a password hidden).")
    status: str = Field(description="up, down or unknown (not tried yet).")
    last_exchange: datetime | None = None
    last_error: str | None = None
    learned_hours: float = Field(description="History filled in from the carbon provider's past at start.")


class PolicyOut(BaseModel):
    """What the selection policy promises and how the fleet stands this period."""

    name: str
    target_error: float | None = Field(default=None, description="error-target: the mean error rate (%) promised "
                                       "over each period.")
    period_start: datetime | None = None
    period_end: datetime | None = None
    served_requests: float | None = Field(default=None, description="Requests the fleet served this period.")
    mean_error: float | None = Field(default=None, description="Their mean error rate (%), fleet-wide.")
    history_hours: float | None = None
    store: StateStoreOut | None = None


class HealthResponse(BaseModel):
    status: str = "ok"
    version: str


class TensorInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class TensorOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferResponse(BaseModel):
    """KServe v2 inference response, with the gateway's decision in ``parameters``."""

    model_name: str
    model_version: str = ""
    id: str | None = None
    outputs: list[TensorOutput]
    parameters: dict[str, Any] = {}


class ReloadOut(BaseModel):
    pool: str
    models: list[str]
    added: list[str]
    removed: list[str]
    loaded: list[str] = Field(description="Models loaded into Triton (explicit model control).")
    unloaded: list[str]
