from pathlib import Path

import pytest

from gateway.settings import ConfigError, load_settings


def test_defaults():
    settings = load_settings()
    assert settings.triton.url is None
    assert settings.resolved_pool_file == Path("model_repository/pool.yaml")
    assert settings.carbon.source == "static"


def test_file_overrides_environment_and_flags_override_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CARBON_GATEWAY_PORT", "9000")
    monkeypatch.setenv("CARBON_GATEWAY_CARBON__INTENSITY", "111")
    monkeypatch.setenv("CARBON_GATEWAY_CARBON__C_LOW", "50")
    config = tmp_path / "gateway.yaml"
    config.write_text("carbon:\n  intensity: 222\ntop_k: 3\n")
    settings = load_settings(config, {"top_k": 7})
    assert settings.port == 9000          # environment
    assert settings.carbon.c_low == 50    # environment, in a section the file also sets
    assert settings.carbon.intensity == 222  # file beats environment
    assert settings.top_k == 7            # flags beat file


@pytest.mark.parametrize("text, message", [
    ("port: eighty\n", "port: Input should be a valid integer"),
    ("carbon:\n  source: trace\n", "carbon.trace_path: Field required (carbon.source=trace)"),
    ("carbon:\n  c_low: 300\n  c_high: 100\n", "must be above carbon.c_low"),
    ("carbon:\n  intensty: 5\n", "carbon.intensty: Extra inputs are not permitted (carbon.source=static)"),
    ("pue: 0.5\n", "pue"),
    ("- a list\n", "must hold a mapping"),
    ("carbon: [\n", "not valid YAML"),
])
def test_broken_config_names_the_setting(tmp_path, text, message):
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert message in str(caught.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml")


def test_secrets_stay_out_of_reprs_and_dumps():
    settings = load_settings(None, {"admin_token": "hunter2-hunter2-hunter2",
                                    "carbon": {"source": "electricitymaps",
                                               "electricitymaps": {"zone": "GB", "auth_token": "em-key"}}})
    assert settings.admin_token.get_secret_value() == "hunter2-hunter2-hunter2"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2" not in text and "em-key" not in text


def test_workers_receive_the_real_secrets():
    import json

    from gateway.server import _reveal
    from gateway.settings import GatewaySettings

    settings = load_settings(None, {"admin_token": "hunter2-hunter2-hunter2", "triton": {"url": "h:1"}})
    payload = json.dumps(settings.model_dump(), default=_reveal)
    assert GatewaySettings.model_validate(json.loads(payload)) == settings


@pytest.mark.parametrize("token", ["", "   ", "short-token"])
def test_an_empty_or_short_admin_token_is_refused(token):
    with pytest.raises(ConfigError, match="admin_token must be at least 16 characters"):
        load_settings(None, {"admin_token": token})
