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


def test_uv_builds_see_how_to_reach_the_index_but_none_of_the_platforms_secrets(monkeypatch, tmp_path):
    for name, value in {
        "DATABASE_URL": "postgres://mlopen:secret@db/mlopen",
        "CELERY_BROKER_URL": "redis://:pw@r/0",
        "DJANGO_SECRET_KEY": "k",
        "MLOPEN_ADMIN_PASSWORD": "p",
        "MLOPEN_TOKEN": "t",
        "HTTPS_PROXY": "http://proxy:3128",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
        "UV_INDEX_URL": "https://mirror.example/simple",
        "UV_CONFIG_FILE": "/home/w/uv.toml",
        "UV_NO_BUILD_ISOLATION": "1",
        "XDG_CONFIG_HOME": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)

    env = environments._build_environment_variables(tmp_path / "home")

    secrets = {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SECRET_KEY", "MLOPEN_ADMIN_PASSWORD", "MLOPEN_TOKEN"}
    assert not secrets & set(env)
    assert (env["HTTPS_PROXY"], env["SSL_CERT_FILE"], env["UV_INDEX_URL"]) == (
        "http://proxy:3128",
        "/etc/ssl/certs/ca.pem",
        "https://mirror.example/simple",
    )
    assert env["UV_CACHE_DIR"] == str(environments.uv_cache())
    assert env["UV_PYTHON_DOWNLOADS"] == "never"
    # A clean environment: no uv setting but the index's, no config file, HOME an empty folder.
    assert "UV_CONFIG_FILE" not in env and "UV_NO_BUILD_ISOLATION" not in env
    assert (env["UV_NO_CONFIG"], env["HOME"]) == ("1", str(tmp_path / "home"))


def test_pips_index_settings_reach_uv_as_uvs_own(monkeypatch, tmp_path):
    for name in (
        "UV_INDEX_URL",
        "UV_DEFAULT_INDEX",
        "UV_FIND_LINKS",
        "UV_EXTRA_INDEX_URL",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "XDG_CONFIG_DIRS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    (tmp_path / "pip.conf").write_text(
        "[global]\nindex-url = https://mirror.example/simple\n"
        "find-links = /srv/wheels\n  /srv/more-wheels\n"
        "extra-index-url = file:///srv/partial-mirror\n"
    )
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://extra.example/simple")

    env = environments._build_environment_variables(tmp_path / "home")

    assert (env["UV_DEFAULT_INDEX"], env["UV_FIND_LINKS"], env["UV_EXTRA_INDEX_URL"]) == (
        "https://mirror.example/simple",
        "/srv/wheels,/srv/more-wheels",
        "https://extra.example/simple",
    )
    # Local folders the settings name are what the build sandbox must be able to read.
    assert {"/srv/wheels", "/srv/more-wheels"} <= set(environments._local_sources(env))


def test_a_failed_build_is_summed_up_by_what_its_last_command_said():
    assert environments.failure_summary(FAILED_BUILD_LOG) == (
        "error: No solution found when resolving dependencies cause: Because nosuchpkg was not found in the "
        "package registry and you require nosuchpkg, we can conclude that your requirements are unsatisfiable."
    )


def test_a_long_failure_is_cut_with_an_ellipsis():
    summary = environments.failure_summary("$ uv pip install\n" + "x" * 5000, limit=100)

    assert summary == "x" * 97 + "..."


def test_uvs_cache_is_under_mlopen_home_unless_a_shared_one_is_set(settings, tmp_path):
    settings.MLOPEN_UV_CACHE_DIR = None
    assert environments.uv_cache() == environments.envs_root() / "uv-cache"
    settings.MLOPEN_UV_CACHE_DIR = tmp_path
    assert environments.uv_cache() == tmp_path
