"""Each extension point is one registry of options models, and each settings section a discriminated union over
it: every entry is configurable by name, with its own options, and nothing else is."""

import typing

import pytest
from pydantic import TypeAdapter

from gateway.carbon import PROVIDERS, CarbonSourceOptions
from gateway.carbon.settings import CarbonSettings
from gateway.energy import METERS, EnergyOptions
from gateway.energy.settings import EnergySettings
from gateway.policy import POLICIES, PolicyOptions
from gateway.policy.settings import PolicySettings
from gateway.settings import ConfigError, load_settings

#: The least each registered entry needs besides its name.
REQUIRED = {"fixed": {"model": "resnet18"}, "carbon-price": {"price": 1.0}, "online-budget": {"budget_g": 1.0},
            "trace": {"trace_path": "trace.csv"}, "electricitymaps": {"electricitymaps": {"zone": "GB",
                                                                                           "auth_token": "t"}},
            "watttime": {"watttime": {"username": "u", "password": "p", "region": "CAISO_NORTH"}},
            "triton": {"triton_metrics_url": "http://triton:8002/metrics"}}
SECTIONS = (("policy", "name", POLICIES, PolicyOptions), ("carbon", "source", PROVIDERS, CarbonSourceOptions),
            ("energy", "meter", METERS, EnergyOptions))


def test_unknown_names_are_refused_with_the_choices():
    for section, key, registry, _ in SECTIONS:
        with pytest.raises(ConfigError, match=f"{section}: unknown .*choose one of {', '.join(registry)}"):
            load_settings(None, {section: {key: "nonsense"}})


@pytest.mark.parametrize(("section", "key", "registry", "base"), SECTIONS, ids=[s[0] for s in SECTIONS])
def test_every_registered_entry_is_configurable_by_name_with_its_own_options(section, key, registry, base):
    for name, options in registry.items():
        assert issubclass(options, base) and options.model_fields[key].default == name
        chosen = getattr(load_settings(None, {section: {key: name, **REQUIRED.get(name, {})}}), section)
        assert type(chosen) is options


@pytest.mark.parametrize("union", [PolicySettings, CarbonSettings, EnergySettings])
def test_each_section_is_a_discriminated_union_of_exactly_the_registry(union):
    members = typing.get_args(typing.get_args(union)[0])
    registry = {PolicySettings: POLICIES, CarbonSettings: PROVIDERS, EnergySettings: METERS}[union]
    assert [typing.get_args(m)[0] for m in members] == list(registry.values())
    schema = TypeAdapter(union).json_schema()
    assert len(schema["oneOf"]) == len(registry)  # documented as one of the registry's models


def test_another_entrys_option_is_a_mistake_not_ignored():
    with pytest.raises(ConfigError, match=r"policy\.target_error: Extra .* \(policy\.name=interpolation\)"):
        load_settings(None, {"policy": {"name": "interpolation", "target_error": 6.0}})
    with pytest.raises(ConfigError, match=r"carbon\.trace_path: Extra .* \(carbon\.source=static\)"):
        load_settings(None, {"carbon": {"source": "static", "trace_path": "trace.csv"}})
