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
