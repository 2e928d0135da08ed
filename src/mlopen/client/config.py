"""Where the client finds its server and token: flags, then environment, then a saved profile.

Profiles live in ~/.config/mlopen/config.json (or $MLOPEN_CONFIG), readable by the owner only,
since they hold API tokens::

    {"default": "work", "profiles": {"work": {"url": "https://ml.example.org", "token": "..."}}}
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlopen.client.client import ConfigError

DEFAULT_PROFILE = "default"


def config_path() -> Path:
    explicit = os.environ.get("MLOPEN_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mlopen" / "config.json"


def load_config(path: Path | None = None) -> dict:
    path = path or config_path()
    if not path.exists():
        return {"profiles": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("profiles", {}), dict):
        raise ConfigError(f'{path} is not an mlopen config file (expected {{"profiles": {{...}}}})')
    data.setdefault("profiles", {})
    return data


def save_config(data: dict, path: Path | None = None) -> Path:
    """Write the config atomically, owner-only (0600) from the moment the file exists."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".json")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)
    return path


def save_profile(name: str, url: str, token: str, make_default: bool = True) -> Path:
    data = load_config()
    data["profiles"][name] = {"url": url, "token": token}
    if make_default or "default" not in data:
        data["default"] = name
    return save_config(data)


def remove_profile(name: str) -> bool:
    data = load_config()
    if name not in data["profiles"]:
        return False
    del data["profiles"][name]
    if data.get("default") == name:
        data["default"] = next(iter(data["profiles"]), None)
    save_config(data)
    return True


@dataclass
class Settings:
    url: str | None
    token: str | None
    profile: str | None  # the profile the values came from, if any


def resolve(url: str | None = None, token: str | None = None, profile: str | None = None) -> Settings:
    """Each of url and token from: the flag, else MLOPEN_URL / MLOPEN_TOKEN, else the profile."""
    url = url or os.environ.get("MLOPEN_URL") or None
    token = token or os.environ.get("MLOPEN_TOKEN") or None
    chosen = profile or os.environ.get("MLOPEN_PROFILE") or None
    used = None
    if url is None or token is None or chosen:
        data = load_config()
        name = chosen or data.get("default")
        if chosen and chosen not in data["profiles"]:
            raise ConfigError(
                f"there is no profile {chosen!r} in {config_path()} (run `mlopen login --profile {chosen}`)"
            )
        saved = data["profiles"].get(name) if name else None
        if isinstance(saved, dict):
            used = name
            url = url or saved.get("url")
            token = token or saved.get("token")
    return Settings(url=url, token=token, profile=used)
