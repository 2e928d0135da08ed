"""Settings read from the environment: where the folder broker keeps its queue."""

from __future__ import annotations

from pathlib import Path

from mlopen.config import broker_folder


def test_the_folder_broker_lives_in_mlopen_home_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPEN_HOME", str(tmp_path))

    assert broker_folder("filesystem://") == tmp_path / "broker"


def test_a_folder_broker_url_with_a_path_names_the_folder_so_workers_with_their_own_home_can_share_it(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("MLOPEN_HOME", str(tmp_path / "own-home"))

    assert broker_folder(f"filesystem://{tmp_path}/shared/broker") == tmp_path / "shared" / "broker"
    assert broker_folder("filesystem:///srv/mlopen/broker") == Path("/srv/mlopen/broker")


def test_env_example_lists_every_setting_mlopen_reads():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    read = set(re.findall(r'env_(?:str|int|float|bool)\("([A-Z0-9_]+)"', (root / "src/mlopen/settings.py").read_text()))
    listed = set(re.findall(r"^#?\s*([A-Z0-9_]+)=", (root / ".env.example").read_text(), re.MULTILINE))

    assert read - listed == set()


def test_email_is_printed_by_default_and_an_email_url_configures_smtp(tmp_path):
    from mlopen.config import email_settings

    assert email_settings("", tmp_path)["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    smtp = email_settings("smtp://mailer:p%40ss@mail.example.com:587/?tls=True", tmp_path)
    assert (smtp["EMAIL_HOST"], smtp["EMAIL_PORT"], smtp["EMAIL_HOST_USER"], smtp["EMAIL_HOST_PASSWORD"]) == (
        "mail.example.com",
        587,
        "mailer",
        "p@ss",
    )
    assert smtp["EMAIL_USE_TLS"] is True and smtp["EMAIL_USE_SSL"] is False


def test_a_file_email_url_keeps_its_absolute_folder(tmp_path):
    from mlopen.config import email_settings

    assert email_settings("file:///var/mail/mlopen", tmp_path)["EMAIL_FILE_PATH"] == "/var/mail/mlopen"
    assert email_settings("file:", tmp_path)["EMAIL_FILE_PATH"] == str(tmp_path)


def test_an_unknown_email_scheme_stops_the_start_with_its_name(tmp_path):
    import pytest

    from mlopen.config import ConfigError, email_settings

    with pytest.raises(ConfigError, match="EMAIL_URL must start with smtp:"):
        email_settings("sendgrid://key", tmp_path)


def test_postgresql_prepares_statements_unless_turned_off_for_a_transaction_pooler():
    from mlopen.config import prepared_statement_options

    assert prepared_statement_options("django.db.backends.postgresql", True) == {
        "server_side_binding": True,
        "prepare_threshold": 5,
    }
    assert prepared_statement_options("mlopen.core.postgresql", True) == {
        "server_side_binding": True,
        "prepare_threshold": 5,
    }
    assert prepared_statement_options("django.db.backends.postgresql", False) == {}
    assert prepared_statement_options("mlopen.core.sqlite", True) == {}


def test_a_redis_consumer_waits_a_quarter_second_per_brpop_so_a_stopping_worker_is_not_held_a_second(tmp_path):
    import json
    import os
    import subprocess
    import sys

    def transport_options(broker: str) -> dict:
        env = {**os.environ, "MLOPEN_HOME": str(tmp_path), "CELERY_BROKER_URL": broker}
        env["DJANGO_SETTINGS_MODULE"] = "mlopen.settings"
        code = "import json\nfrom django.conf import settings as s\n"
        code += "print(json.dumps(s.CELERY_BROKER_TRANSPORT_OPTIONS))"
        shown = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(shown.stdout)

    assert transport_options("redis://127.0.0.1:6379/3") == {"polling_interval": 0.25}
    assert transport_options("amqp://guest:guest@127.0.0.1:5672//") == {}
