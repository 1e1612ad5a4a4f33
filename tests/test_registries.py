"""Each extension point is one registry that the settings read: a new entry is usable by name, nothing else."""

import pytest

from gateway.carbon import PROVIDERS, StaticSource, make_monitor
from gateway.carbon.registry import Provider
from gateway.energy import METERS, make_counter
from gateway.modelzoo.build import built_pool
from gateway.policy import POLICIES, FixedPolicy, make_policy
from gateway.settings import ConfigError, load_settings

from .conftest import POOL_MODELS


class Smallest(FixedPolicy):
    name = "smallest"
    requires = ()

    @classmethod
    def from_settings(cls, pool, settings, *, pue=1.0):
        return cls(pool, pool.by_energy[0].name, **cls.common_options(settings))


class Constant:
    name = "constant"

    def read_joules(self) -> float:
        return 42.0

    def close(self) -> None:
        return None


def test_unknown_names_are_refused_with_the_choices():
    for section, value, choices in (("policy", "name", "interpolation"), ("carbon", "source", "electricitymaps"),
                                    ("energy", "meter", "nvml")):
        with pytest.raises(ConfigError, match=f"choose one of .*{choices}"):
            load_settings(None, {section: {value: "nonsense"}})


def test_a_registered_policy_provider_and_meter_are_configurable_by_name(monkeypatch):
    monkeypatch.setitem(POLICIES, "smallest", Smallest)
    monkeypatch.setitem(PROVIDERS, "fixed-42", Provider(lambda settings: StaticSource(42.0)))
    monkeypatch.setitem(METERS, "constant", lambda options: Constant())
    settings = load_settings(None, {"policy": {"name": "smallest"}, "carbon": {"source": "fixed-42"},
                                    "energy": {"meter": "constant"}})
    pool = built_pool(dict.fromkeys(POOL_MODELS, "random"))
    assert make_policy(pool, settings.policy).candidates[0].name == "resnet18"
    assert make_monitor(settings.carbon).source.intensity == 42.0
    counter = make_counter(settings.energy.meter)
    assert counter is not None and counter.read_joules() == 42.0
