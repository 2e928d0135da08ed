"""Reading settings from the environment.

Every mlopen setting comes from an environment variable with a default that needs nothing.
These helpers fail loudly on a value that does not parse, naming the variable, so a typo in a
deployment shows up at start-up and not as a strange behaviour an hour later.
"""

from __future__ import annotations

import os
from pathlib import Path


class ConfigError(ValueError):
    """An environment variable holds a value mlopen cannot use."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def mlopen_home() -> Path:
    """Where mlopen keeps its database, broker folders and stored files.

    Defaults to ``./.mlopen`` (relative to the directory mlopen is started from) so that a
    checkout is self-contained and two checkouts never share state by accident.
    """
    return Path(os.environ.get("MLOPEN_HOME") or ".mlopen").expanduser().resolve()


def storage_dir() -> Path:
    raw = os.environ.get("MLOPEN_STORAGE_DIR")
    return Path(raw).expanduser().resolve() if raw else mlopen_home() / "storage"


def filesystem_broker_url() -> str:
    return "filesystem://"


def broker_folder(broker_url: str = "filesystem://") -> Path:
    """The folder broker's folder: the URL's path (``filesystem:///shared/broker``), else MLOPEN_HOME/broker.

    Naming the folder in the URL lets a worker with its own MLOPEN_HOME share the queue with the
    web server through CELERY_BROKER_URL alone, as it would with redis://.
    """
    from urllib.parse import urlsplit

    path = urlsplit(broker_url).path
    return Path(path).expanduser().resolve() if path not in ("", "/") else mlopen_home() / "broker"
