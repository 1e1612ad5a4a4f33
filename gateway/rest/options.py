"""The inference routes' per-request options, read from headers and the query string.

Declared as pydantic models and validated in one call each, rather than as FastAPI dependencies: the
dependency machinery cost a tensor request about a third of the gateway's own CPU in the app. The
OpenAPI document lists them all the same (``openapi_parameters``), and a bad value gets FastAPI's
422 ``invalid_request`` with the parameter's place and name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..policy import Constraints


class HeaderOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    min_accuracy: float | None = Field(None, alias="x-min-accuracy", ge=0, le=100, description=(
        "Least accuracy (%, 100 - the pool's error rate) of the model that may serve this request."))
    max_latency_ms: float | None = Field(None, alias="x-max-latency-ms", gt=0,
                                         description="Slowest model latency (ms) accepted.")

    @property
    def constraints(self) -> Constraints | None:
        if self.min_accuracy is None and self.max_latency_ms is None:
            return None
        return Constraints(min_accuracy=self.min_accuracy, max_latency_ms=self.max_latency_ms)


class InferQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    energy: Literal["estimate", "measured"] = Field("estimate", description=(
        "`measured`: wait for this request's sampling window to close (about `energy.sample_interval_s`) and "
        "answer with its measured energy share; the profiled estimate where no meter exists, or after "
        "`energy.receipt_timeout_s`. `energy.measured` says which."))

    @property
    def receipt(self) -> bool:
        return self.energy == "measured"


class ClassifyQuery(InferQuery):
    top_k: int = Field(5, ge=1, le=1000, description="How many classes to return.")


Options = TypeVar("Options", bound=BaseModel)


def read(model: type[Options], values: Mapping[str, str], where: Literal["header", "query"]) -> Options:
    """``values`` (a request's headers or query parameters) as ``model``; ``RequestValidationError`` if bad."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": (where, *error["loc"])} for error in exc.errors()]) from None


def openapi_parameters(model: type[BaseModel], where: Literal["header", "query"]) -> list[dict[str, Any]]:
    """The OpenAPI ``parameters`` entries of ``model``'s fields."""
    schema = model.model_json_schema(by_alias=True)
    return [{"name": name, "in": where, "required": False, "description": field.pop("description", ""),
             "schema": field} for name, field in schema["properties"].items()]
