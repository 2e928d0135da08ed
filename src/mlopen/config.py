"""Reading settings from the environment.

Every mlopen setting comes from an environment variable with a default that needs nothing.
These helpers fail loudly on a value that does not parse, naming the variable, so a typo in a
deployment shows up at start-up and not as a strange behaviour an hour later.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_email_url


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


def access_log_handler(target: str) -> dict:
    """The logging handler of MLOPEN_ACCESS_LOG: "-" (or "off") the console, else a file that
    logrotate may move (WatchedFileHandler reopens it), opened on the first line written, so that
    processes that serve no request (workers) never create it."""
    if target == "-" or target.lower() == "off":
        return {"class": "logging.StreamHandler", "formatter": "access"}
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = mlopen_home() / path
    return {"class": "logging.handlers.WatchedFileHandler", "formatter": "access", "filename": str(path), "delay": True}


def access_log_level(target: str) -> str:
    """The level of the ``mlopen.access`` logger for MLOPEN_ACCESS_LOG: above its lines when "off"."""
    return "WARNING" if target.lower() == "off" else "INFO"


def prepared_statement_options(engine: str, enabled: bool) -> dict:
    """Database OPTIONS that let PostgreSQL plan each of mlopen's statements once per connection.

    Values go apart from the SQL (server-side binding), and psycopg prepares a statement once it
    has run 5 times on a connection: the same few statements run for every request and every run,
    and planning them again cost the database half its CPU per run. Django leaves both off by
    default because PgBouncer in transaction mode cannot keep a session's prepared statements:
    MLOPEN_DATABASE_PREPARED=false (``enabled``) keeps Django's default there.
    """
    if engine not in ("django.db.backends.postgresql", "mlopen.core.postgresql") or not enabled:
        return {}
    return {"server_side_binding": True, "prepare_threshold": 5}


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
    path = urlsplit(broker_url).path
    return Path(path).expanduser().resolve() if path not in ("", "/") else mlopen_home() / "broker"


def s3_storage_options(url: str) -> dict:
    """django-storages' S3Storage options for MLOPEN_STORAGE_URL=s3://bucket/optional/prefix.

    Credentials are left to boto3 (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an
    instance role); the endpoint and region come from AWS_S3_ENDPOINT_URL and AWS_S3_REGION_NAME.
    """
    parts = urlsplit(url)
    bucket = parts.netloc
    prefix = parts.path.strip("/")
    if parts.scheme != "s3" or not bucket or parts.query or parts.fragment:
        raise ConfigError(f"MLOPEN_STORAGE_URL must look like s3://bucket or s3://bucket/prefix, got {url!r}")
    if ".." in prefix.split("/") or "//" in prefix:
        raise ConfigError(f"MLOPEN_STORAGE_URL's prefix must be a plain folder name, got {prefix!r}")
    if importlib.util.find_spec("boto3") is None:
        raise ConfigError("MLOPEN_STORAGE_URL needs boto3: pip install 'mlopen[s3]'")
    endpoint = os.environ.get("AWS_S3_ENDPOINT_URL", "").strip()
    if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError(f"AWS_S3_ENDPOINT_URL must be an http:// or https:// URL, got {endpoint!r}")
    from botocore.config import Config  # noqa: PLC0415 - optional: botocore comes with the s3 extra, checked above

    style = os.environ.get("AWS_S3_ADDRESSING_STYLE", "").strip() or ("path" if endpoint else "auto")
    if style not in ("auto", "path", "virtual"):
        raise ConfigError(f"AWS_S3_ADDRESSING_STYLE must be auto, path or virtual, got {style!r}")
    return {
        "bucket_name": bucket,
        "location": prefix,
        "file_overwrite": True,  # names are mlopen's own and kept exactly, never renamed to _abc123
        "default_acl": None,  # the bucket's own policy decides; objects are never public by mlopen
        "querystring_auth": True,
        "endpoint_url": endpoint or None,
        "region_name": os.environ.get("AWS_S3_REGION_NAME", "").strip() or None,
        # MinIO and Ceph want path-style URLs (http://host:9000/bucket/key). Short connect timeouts
        # and few retries: a storage that is down shows in /healthz at once instead of minutes later.
        "client_config": Config(
            s3={"addressing_style": style},
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    }


def email_settings(url: str, default_folder: Path) -> dict:
    """Django's EMAIL_* settings from an EMAIL_URL (dj-email-url's form); console: when empty.

    ``file:///var/mail/mlopen`` names an absolute folder (dj-email-url would drop its leading
    slash); ``file:`` alone writes to ``default_folder``.
    """
    url = url.strip() or "console:"
    parsed = dj_email_url.parse(url)
    if "EMAIL_BACKEND" not in parsed:
        raise ConfigError(f"EMAIL_URL must start with smtp:, submission:, console:, file: or dummy:, got {url[:20]!r}")
    return {
        "EMAIL_BACKEND": parsed["EMAIL_BACKEND"],
        "EMAIL_HOST": parsed["EMAIL_HOST"] or "localhost",
        "EMAIL_PORT": parsed["EMAIL_PORT"] or 25,
        "EMAIL_HOST_USER": parsed["EMAIL_HOST_USER"] or "",
        "EMAIL_HOST_PASSWORD": parsed["EMAIL_HOST_PASSWORD"] or "",
        "EMAIL_USE_TLS": bool(parsed["EMAIL_USE_TLS"]),
        "EMAIL_USE_SSL": bool(parsed["EMAIL_USE_SSL"]),
        "EMAIL_FILE_PATH": urlsplit(url).path or str(default_folder),
    }
