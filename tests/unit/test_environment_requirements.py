"""Building pipeline environments: what uv is shown, and how a failed build is summed up."""

from __future__ import annotations

from mlopen.pipelines import environments

FAILED_BUILD_LOG = """$ uv venv --python /work/venv/bin/python /srv/envs/0a1b
Using CPython 3.11.7 interpreter at: /work/venv/bin/python
Creating virtual environment at: /srv/envs/0a1b
$ uv pip install --python /srv/envs/0a1b/bin/python -r /srv/envs/0a1b.requirements.txt
Using Python 3.11.7 environment at: /srv/envs/0a1b
error: No solution found when resolving dependencies
  cause: Because nosuchpkg was not found in the package registry and you require nosuchpkg, we can conclude \
that your requirements are unsatisfiable.
"""


def test_uv_builds_see_how_to_reach_the_index_but_none_of_the_platforms_secrets(monkeypatch):
    for name, value in {"DATABASE_URL": "postgres://mlopen:secret@db/mlopen", "CELERY_BROKER_URL": "redis://:pw@r/0",
                        "DJANGO_SECRET_KEY": "k", "MLOPEN_ADMIN_PASSWORD": "p", "MLOPEN_TOKEN": "t",
                        "HTTPS_PROXY": "http://proxy:3128", "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
                        "UV_INDEX_URL": "https://mirror.example/simple"}.items():
        monkeypatch.setenv(name, value)

    env = environments._build_environment_variables()

    secrets = {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "MLOPEN_ADMIN_PASSWORD", "MLOPEN_TOKEN"}
    assert not secrets & set(env)
    assert (env["HTTPS_PROXY"], env["SSL_CERT_FILE"], env["UV_INDEX_URL"]) == (
        "http://proxy:3128", "/etc/ssl/certs/ca.pem", "https://mirror.example/simple")
    assert env["UV_CACHE_DIR"] == str(environments.envs_root() / "uv-cache")
    assert env["UV_PYTHON_DOWNLOADS"] == "never"


def test_a_failed_build_is_summed_up_by_what_its_last_command_said():
    assert environments.failure_summary(FAILED_BUILD_LOG) == (
        "error: No solution found when resolving dependencies cause: Because nosuchpkg was not found in the "
        "package registry and you require nosuchpkg, we can conclude that your requirements are unsatisfiable.")


def test_a_long_failure_is_cut_with_an_ellipsis():
    summary = environments.failure_summary("$ uv pip install\n" + "x" * 5000, limit=100)

    assert summary == "x" * 97 + "..."
