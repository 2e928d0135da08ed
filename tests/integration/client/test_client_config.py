"""Where the client finds its server and token, and how it spells the server's URL. No server needed."""

from __future__ import annotations

import os
import stat

import pytest

from mlopen.client import config
from mlopen.client.client import ConfigError, normalize_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://ml.example.org", "http://ml.example.org"),
        ("https://ml.example.org/", "https://ml.example.org"),
        ("localhost:8000", "http://localhost:8000"),
        ("http://host:8000/api/v1/", "http://host:8000"),
        ("http://host/mlopen/api", "http://host/mlopen"),
    ],
)
def test_normalize_url(given, expected):
    assert normalize_url(given) == expected


def test_normalize_url_refuses_other_schemes():
    with pytest.raises(ConfigError, match="must start with http:// or https://"):
        normalize_url("ftp://host")


def test_flag_beats_environment_beats_profile(isolated_config, monkeypatch):
    config.save_profile("default", "http://saved", "saved-token")
    assert config.resolve() == config.Settings("http://saved", "saved-token", "default")
    monkeypatch.setenv("MLOPEN_TOKEN", "env-token")
    assert config.resolve() == config.Settings("http://saved", "env-token", "default")
    monkeypatch.setenv("MLOPEN_URL", "http://env")
    assert config.resolve().url == "http://env"
    assert config.resolve(url="http://flag", token="flag-token") == config.Settings("http://flag", "flag-token", None)


def test_named_profiles(isolated_config, monkeypatch):
    config.save_profile("work", "http://work", "w")
    config.save_profile("home", "http://home", "h", make_default=False)
    assert config.resolve().url == "http://work"
    assert config.resolve(profile="home").url == "http://home"
    monkeypatch.setenv("MLOPEN_PROFILE", "home")
    assert config.resolve().token == "h"
    with pytest.raises(ConfigError, match="there is no profile 'nope'"):
        config.resolve(profile="nope")


def test_config_file_is_owner_only_even_when_rewritten(isolated_config):
    config.save_profile("default", "http://a", "t1")
    os.chmod(isolated_config, 0o644)
    config.save_profile("default", "http://a", "t2")
    assert stat.S_IMODE(os.stat(isolated_config).st_mode) == 0o600
    assert config.remove_profile("default") is True
    assert config.remove_profile("default") is False


def test_unreadable_config_is_a_config_error(isolated_config):
    isolated_config.parent.mkdir(parents=True)
    isolated_config.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        config.resolve()
