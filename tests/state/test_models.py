"""The data contract refuses what no store could add up: misaligned buckets, negative counts, empty periods."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.state import BUCKET_S, StateDelta, StateSnapshot, bucket_of, period_id


def test_buckets_are_aligned_to_the_epoch():
    assert bucket_of(1_700_000_123.4) == 1_700_000_100 - 1_700_000_100 % BUCKET_S
    assert bucket_of(BUCKET_S * 7) == BUCKET_S * 7 and bucket_of(BUCKET_S * 7 - 0.001) == BUCKET_S * 6
    assert (period_id(1_719_792_000.0), period_id(12.5)) == ("1719792000", "12.5")


@pytest.mark.parametrize("fields, message", [
    ({"intensity": {901: 100.0}}, "multiples of 900"),
    ({"requests": {900: -1.0}}, "cannot be negative"),
    ({"by_model": {"resnet18": -2.0}}, "cannot be negative"),
    ({"by_model": {"": 1.0}}, "needs a name"),
    ({"served": -1.0}, "greater than or equal to 0"),
    ({"co2_g": float("nan")}, "finite"),
    ({"intensity": {900: float("inf")}}, "finite"),
    ({"period_end": 0.0}, "must come after period_start"),
    ({"key": "two words"}, "pattern"),
    ({"key": "a:b"}, "pattern"),
    ({"servd": 1.0}, "Extra inputs"),
])
def test_a_delta_refuses_what_cannot_be_added(fields, message):
    with pytest.raises(ValidationError, match=message):
        StateDelta(**{"key": "carbon-gateway", "period_start": 0.0, "period_end": 60.0, **fields})


def test_json_keys_come_back_as_bucket_numbers():
    delta = StateDelta(key="k", period_start=0, period_end=1, intensity={900: 1.5}, requests={1800: 2})
    assert StateDelta.model_validate_json(delta.model_dump_json()) == delta
    assert StateSnapshot.model_validate_json('{"period_start": 0, "requests": {"900": 3}}').requests == {900: 3.0}
