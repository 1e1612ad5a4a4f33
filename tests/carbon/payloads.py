"""Response bodies in each provider's real format."""

from __future__ import annotations

from datetime import datetime, timedelta, UTC
from typing import Any


def api_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def half_hour(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 30, second=0, microsecond=0)


def uk_period(start: datetime, forecast: float | None, actual: float | None = None) -> dict[str, Any]:
    return {"from": api_time(start), "to": api_time(start + timedelta(minutes=30)),
            "intensity": {"forecast": forecast, "actual": actual, "index": "moderate"}}


def uk_national(*periods: dict[str, Any]) -> dict[str, Any]:
    return {"data": list(periods)}


def uk_periods(start: datetime, values: list[float], *, actual: bool = True) -> list[dict[str, Any]]:
    return [uk_period(start + i * timedelta(minutes=30), v + 4, v if actual else None) for i, v in enumerate(values)]


def uk_region(periods: list[dict[str, Any]], region_id: int = 11) -> dict[str, Any]:
    for period in periods:
        period["intensity"].pop("actual", None)
        period["generationmix"] = [{"fuel": "gas", "perc": 40.1}, {"fuel": "wind", "perc": 30.2}]
    return {"regionid": region_id, "dnoregion": "WPD South West", "shortname": "South West England",
            "data": periods}


def em_point(moment: datetime, value: float | None, zone: str = "GB") -> dict[str, Any]:
    stamp = moment.strftime("%Y-%m-%dT%H:00:00.000Z")
    return {"zone": zone, "carbonIntensity": value, "datetime": stamp, "updatedAt": stamp, "createdAt": stamp,
            "emissionFactorType": "lifecycle", "isEstimated": False, "estimationMethod": None}


def watttime_index(value: float, moment: datetime, region: str = "CAISO_NORTH") -> dict[str, Any]:
    return {"data": [{"point_time": moment.isoformat(), "value": value}],
            "meta": {"region": region, "signal_type": "co2_moer", "units": "percentile",
                     "data_point_period_seconds": 300, "model": {"date": "2023-03-01"},
                     "generated_at": moment.isoformat(), "generated_at_period_seconds": 300, "warnings": []}}


def em_past_range(points: list[dict[str, Any]], zone: str = "GB") -> dict[str, Any]:
    """``/v3/carbon-intensity/past-range``: the zone and its hourly points under ``data``."""
    return {"zone": zone, "data": points}
