"""The ``state`` section: a store by URL, checked before anything starts, its password kept out of reprs."""

from __future__ import annotations

import pytest

from gateway.settings import ConfigError, load_settings
from gateway.state import DEFAULT_URL, FileStore, NullStore, RedisStore, StateSettings, make_store


def test_defaults(monkeypatch):
    monkeypatch.delenv("CARBON_GATEWAY_STATE__URL", raising=False)  # the tests' own default is none
    state = load_settings().state
    assert (state.url, state.key, state.flush_interval_s, state.history_days) == (
        "file://var/state/policy-state.json", "carbon-gateway", 1.0, 30.0)
    assert state.url == DEFAULT_URL


@pytest.mark.parametrize("url, kind", [("file://var/state/policy-state.json", FileStore),
                                       ("file:///var/lib/carbon-gateway/state.json", FileStore),
                                       ("redis://redis:6379/0", RedisStore), ("redis://localhost", RedisStore),
                                       ("rediss://:pw@redis.example:6380", RedisStore), ("none", NullStore)])
async def test_the_scheme_picks_the_store(url, kind):
    store = make_store(load_settings(None, {"state": {"url": url}}).state)
    assert type(store) is kind and store.name in ("file", "redis", "none")
    await store.close()


@pytest.mark.parametrize("url, message", [
    ("postgres://db/state", "unknown state store 'postgres://db/state': use a URL starting with one of file://, "
                            "redis://, rediss://, or `none`"),
    ("var/state.json", "unknown state store"),
    ("None", "unknown state store"),
    ("file://", "names no file"),
    ("file://var/state/", "names no file"),
    ("redis://", "names no host"),
    ("redis://redis:6379/zero", "the database is a number"),
    ("redis://redis:port/0", "Port could not be cast"),
])
def test_a_bad_url_is_refused_with_a_clear_message(url, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"state": {"url": url}})
    assert "state.url:" in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize("section, message", [
    ({"key": "carbon gateway"}, "state.key: String should match pattern"),
    ({"flush_interval_s": 0}, "state.flush_interval_s: Input should be greater than 0"),
    ({"history_days": 40}, "state.history_days: Input should be less than or equal to 35"),
    ({"urls": "none"}, "state.urls: Extra inputs are not permitted"),
])
def test_the_other_settings_are_checked(section, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(None, {"state": section})


def test_the_environment_and_a_file_set_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CARBON_GATEWAY_STATE__URL", "redis://redis:6379/0")
    assert load_settings().state.url == "redis://redis:6379/0"
    config = tmp_path / "gateway.yaml"
    config.write_text("state:\n  url: none\n  key: staging\n")
    state = load_settings(config).state
    assert (state.url, state.key) == ("none", "staging")


def test_a_password_in_the_url_stays_out_of_reprs_but_reaches_the_store():
    settings = load_settings(None, {"state": {"url": "redis://:hunter2-secret@redis:6379/0"}})
    assert "hunter2" not in repr(settings) and "hunter2" not in repr(settings.state)
    assert settings.state.url == "redis://:hunter2-secret@redis:6379/0"  # the workers receive it whole
    assert make_store(StateSettings(url=settings.state.url)).url == "redis://:***@redis:6379/0"
