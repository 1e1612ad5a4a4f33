"""The ``policy`` section of the configuration: the options of one registered policy, told apart by ``name``.

A pydantic discriminated union over ``registry.POLICIES``, so a policy added there is configurable by name;
a section that names none is ``error-target``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Discriminator, Tag, TypeAdapter

from .base import PolicyOptions
from .registry import DEFAULT_POLICY, POLICIES


def _named(value: Any) -> str:
    name = value.get("name", DEFAULT_POLICY) if isinstance(value, dict) else getattr(value, "name", DEFAULT_POLICY)
    return str(name)


if TYPE_CHECKING:
    PolicySettings = PolicyOptions
else:
    PolicySettings = Annotated[
        Union[tuple(Annotated[options, Tag(name)] for name, options in POLICIES.items())],  # noqa: UP007
        Discriminator(_named, custom_error_type="unknown_policy",
                      custom_error_message=f"unknown policy; choose one of {', '.join(POLICIES)}"),
    ]

_ADAPTER: TypeAdapter[PolicyOptions] = TypeAdapter(PolicySettings)


def policy_settings(**values: Any) -> PolicyOptions:
    """The options of the policy ``values`` name (``error-target`` by default), validated as the settings do."""
    return _ADAPTER.validate_python(values)
