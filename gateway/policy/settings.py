"""The ``policy`` section of the configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..choices import one_of
from .registry import POLICIES


class PolicySettings(BaseModel):
    """Which selection policy serves requests, and its parameters (the ``policy`` section of the settings)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="error-target", description="One of the policies of ``gateway.policy.registry``: "
                      "error-target, interpolation, fixed, carbon-price, online-budget.")
    model: str | None = Field(default=None, description="fixed: the model.")
    price: float | None = Field(default=None, ge=0, description="carbon-price: error-rate points (%) one request "
                                "trades for one gram of CO2; `carbon-gateway replay` prints the price that "
                                "meets a budget on a past trace.")
    budget_g: float | None = Field(default=None, gt=0, description="online-budget: grams of CO2 per budget period.")
    period_hours: float = Field(default=24.0, gt=0, description="online-budget: the budget renews every this many "
                                "hours, counted from the Unix epoch (24: at UTC midnight).")
    target_error: float | None = Field(default=None, ge=0, le=100, description="error-target: the mean error rate "
                                       "(%) to meet over each target_period.")
    target_model: str | None = Field(default=None, description="error-target: be as accurate on average as this "
                                     "model. Default (neither given): the pool's second most accurate model.")
    target_period: Literal["day", "week", "month"] = Field(default="month", description="error-target: the UTC "
                                                           "calendar period over which the mean error is met.")
    history_hours: float = Field(default=336.0, gt=0, description="error-target: observed hours (intensity, "
                                 "requests) that predict the rest of the period beyond the provider's forecast.")
    settle_hours: float = Field(default=96.0, ge=0, description="error-target: an error debt or credit is paid "
                                "back over the rest of the period, but over at least this many hours of expected "
                                "requests, so the last days of a period do not swing between extremes.")
    max_latency_ms: float | None = Field(default=None, gt=0, description="Latency SLO: models slower than this "
                                         "are never chosen (models without latency_ms stay eligible).")
    hysteresis: float = Field(default=0.0, ge=0, description="gCO2/kWh the intensity must move past a switching "
                              "point before the chosen model changes (0: off).")

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        return one_of(name, POLICIES, "policy")

    @model_validator(mode="after")
    def _parameters_given(self) -> PolicySettings:
        for needed in POLICIES[self.name].requires:
            if getattr(self, needed) is None:
                raise ValueError(f"policy {self.name} needs policy.{needed}")
        return self

