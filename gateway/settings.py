"""Gateway configuration: defaults < environment (``CARBON_GATEWAY_*``) < config file < CLI flags.

Each extension point's section (``carbon``, ``energy``, ``policy``) is a discriminated union over its
registry, whose entries are the plugins' own options models; this module composes them with the sections
of the server itself (``triton``, ``limits``) and the policy's store (``state``). pydantic-settings reads and
merges the sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from .carbon import PROVIDERS, StaticOptions
from .carbon.settings import CarbonSettings
from .energy import METERS
from .energy.options import AutoOptions
from .energy.settings import EnergySettings
from .errors import ConfigError
from .policy import POLICIES, ErrorTargetOptions
from .policy.settings import PolicySettings
from .state.settings import StateSettings

__all__ = ["CarbonSettings", "ConfigError", "EnergySettings", "GatewaySettings", "LimitSettings", "PolicySettings",
           "StateSettings", "TritonSettings", "load_settings"]


DEFAULT_REPOSITORY = Path("model_repository")
MIN_ADMIN_TOKEN = 16


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    shared_memory_slots: int = Field(default=32, ge=0, description="Tensors go to Triton through this many "
                                     "system shared-memory regions per worker when Triton can open them (same host, "
                                     "same /dev/shm: the local Triton, a sidecar, a compose service sharing the "
                                     "gateway's IPC namespace), else as bytes over gRPC. 0: always gRPC.")
    shared_memory_bytes: int = Field(default=1 << 20, ge=4096, description="Size of each region: larger tensors "
                                     "go over gRPC.")
    image_model: str | None = Field(default=None, description="A Triton model that decodes /v1/classify uploads "
                                    "itself (`build-models --image-model` writes one named `image`): the gateway "
                                    "sends the bytes as they came. Unset: the gateway decodes them.")


class LimitSettings(_Section):
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0, description="Larger images are refused (bombs).")
    max_batch: int = Field(default=8, ge=1, description="Most images in one tensor request.")
    cpu_threads: int | None = Field(default=None, ge=1, description="Threads per worker that decode images and "
                                    "parse large JSON tensors; by default one per core this process may use.")
    max_in_flight: int = Field(default=64, ge=1, description="Inference requests served at once; more get 429. "
                               "A request takes its slot once its body has arrived.")
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, description="Longest request line and headers; "
                                  "longer ones get 431 and the connection is closed.")
    header_timeout_s: float = Field(default=10.0, gt=0, description="A request's line and headers must arrive "
                                    "within this many seconds of its first byte; slower ones get 408.")
    body_timeout_s: float = Field(default=10.0, gt=0, description="An inference request's body must arrive within "
                                  "this many seconds of its headers; slower ones get 408.")
    grpc_idle_s: float = Field(default=60.0, gt=0, description="gRPC: a connection with no call for this long is "
                               "closed.")
    grpc_connection_age_s: float = Field(default=60.0, gt=0, description="gRPC: a connection is closed this long "
                                         "after it opened (its calls get up to 10 s more), so a stalled call holds its "
                                         "slot and memory for a bounded time; clients reconnect by themselves.")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARBON_GATEWAY_", env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    grpc_port: int | None = Field(default=None, ge=1, le=65535, description="Also serve the KServe v2 / Triton "
                                  "gRPC protocol on this port (unset: HTTP only). Workers share it.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes.")
    pool_file: Path | None = Field(default=None, description="Pool file; default: <model_repository>/pool.yaml.")
    labels_file: Path | None = Field(default=None, description="Class names; default: <model_repository>/labels.txt.")
    top_k: int = Field(default=5, ge=1, le=1000)
    pue: float = Field(default=1.0, ge=1.0, description="Power usage effectiveness applied to measured energy.")
    forwarded_allow_ips: list[str] = Field(default=[], description="Proxies whose X-Forwarded-For and "
                                           "X-Forwarded-Proto are believed (addresses or CIDR ranges; '*' for any). "
                                           "Empty: none, so the client's address is the peer's, which a client "
                                           "cannot forge.")
    admin_token: SecretStr | None = Field(default=None, description="Bearer token of the admin API, at least "
                                          f"{MIN_ADMIN_TOKEN} characters; unset: the admin API is disabled.")
    shutdown_timeout_s: int = Field(default=10, ge=1, description="On SIGTERM/SIGINT, how long requests in "
                                      "flight may take to finish before the gateway exits anyway; a second signal "
                                      "exits at once.")
    watch_pool: bool = Field(default=True, description="Reload the pool when its file changes.")
    triton: TritonSettings = TritonSettings()
    carbon: CarbonSettings = Field(default_factory=StaticOptions)
    policy: PolicySettings = Field(default_factory=ErrorTargetOptions)
    energy: EnergySettings = Field(default_factory=AutoOptions)
    limits: LimitSettings = LimitSettings()
    state: StateSettings = StateSettings()

    @field_validator("admin_token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value().strip()) < MIN_ADMIN_TOKEN:
            raise ValueError(f"admin_token must be at least {MIN_ADMIN_TOKEN} characters (it guards pool reloads); "
                             "unset it to disable the admin API")
        return token

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Defaults < environment (``CARBON_GATEWAY_*``) < config file < overrides (the constructor's arguments)."""
        config_file = _CONFIG_FILE.get()
        if config_file is None:
            return init_settings, env_settings
        return init_settings, YamlConfigSettingsSource(settings_cls, yaml_file=config_file), env_settings

    @property
    def resolved_pool_file(self) -> Path:
        return self.pool_file or self.triton.model_repository / "pool.yaml"

    @property
    def resolved_labels_file(self) -> Path:
        return self.labels_file or self.triton.model_repository / "labels.txt"


#: The sections that are unions over a registry, and the key that picks their member.
_CHOSEN_BY: dict[str, tuple[str, Mapping[str, type[BaseModel]]]] = {
    "policy": ("name", POLICIES), "carbon": ("source", PROVIDERS), "energy": ("meter", METERS)}


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """``section.field: message``; in a union section pydantic puts the member's name in the path, which is not
    where the setting is: it goes after the message (``carbon.trace_path: Field required (carbon.source=trace)``)."""
    parts = [str(part) for part in loc]
    if len(parts) >= 2 and parts[0] in _CHOSEN_BY:
        key, registry = _CHOSEN_BY[parts[0]]
        if parts[1] in registry:
            chosen = f"{parts[0]}.{key}={parts.pop(1)}"
            return f"{'.'.join(parts)}: {message} ({chosen})" if len(parts) > 1 else f"{parts[0]}: {message}"
    return f"{'.'.join(parts) or 'settings'}: {message}"


#: The YAML file ``load_settings`` reads, for ``GatewaySettings.settings_customise_sources``.
_CONFIG_FILE: ContextVar[Path | None] = ContextVar("carbon_gateway_config_file", default=None)


def load_settings(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> GatewaySettings:
    """Settings from the environment, a YAML config file and explicit overrides (the CLI's flags), validated as
    one by pydantic-settings, which merges the sources section by section.

    Raises ``ConfigError`` naming each bad setting.
    """
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"cannot read config file {config_file}: no such file")
    token = _CONFIG_FILE.set(config_file)
    try:
        return GatewaySettings(**(overrides or {}))
    except ValidationError as exc:
        problems = "\n".join(f"  - {_problem(err['loc'], err['msg'])}" for err in exc.errors())
        raise ConfigError(f"invalid configuration:\n{problems}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {config_file} is not valid YAML: {exc}") from exc
    except (TypeError, ValueError) as exc:  # the YAML source's answer to a file that is not a mapping
        raise ConfigError(f"config file {config_file} must hold a mapping ({exc})") from exc
    finally:
        _CONFIG_FILE.reset(token)
