"""What the REST routes share: the process's data plane and parts, read from the app, and an outcome's headers."""

from __future__ import annotations

from fastapi import Request

from ..serving.dataplane import DataPlane
from ..serving.runtime import Runtime
from ..serving.service import Outcome


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def plane_of(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.runtime.plane
    return plane


def outcome_headers(outcome: Outcome, elapsed_s: float) -> dict[str, str]:
    """The ``X-*`` headers of an inference response, and its ``Server-Timing``."""
    decision = outcome.decision
    return {
        "X-Model": decision.model.name,
        "X-Model-Weights": outcome.weights,
        "X-Selected-By": outcome.selected_by,
        "X-Carbon-Intensity": f"{decision.carbon.intensity:.3f}",
        "X-Carbon-Source": decision.carbon.reading.source,
        "X-Expected-Error-Rate": f"{decision.model.error_rate:.3f}",
        "X-Energy-Joules": f"{outcome.energy.joules:.6g}",
        "X-Energy-Source": outcome.energy.source,
        "Server-Timing": f"triton;dur={outcome.compute_seconds * 1e3:.2f}, total;dur={elapsed_s * 1e3:.2f}",
        **({"X-CO2-Grams": f"{outcome.co2_g:.6g}"} if outcome.co2_g is not None else {}),
        **({"X-Fallback-From": decision.fallback_from} if decision.fallback_from else {}),
    }
