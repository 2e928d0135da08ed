"""Settings read from the environment: where the folder broker keeps its queue."""

from __future__ import annotations

from pathlib import Path

from mlopen.config import broker_folder


def test_the_folder_broker_lives_in_mlopen_home_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPEN_HOME", str(tmp_path))

    assert broker_folder("filesystem://") == tmp_path / "broker"


def test_a_folder_broker_url_with_a_path_names_the_folder_so_workers_with_their_own_home_can_share_it(
        monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPEN_HOME", str(tmp_path / "own-home"))

    assert broker_folder(f"filesystem://{tmp_path}/shared/broker") == tmp_path / "shared" / "broker"
    assert broker_folder("filesystem:///srv/mlopen/broker") == Path("/srv/mlopen/broker")
