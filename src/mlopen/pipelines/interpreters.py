"""What a built interpreter holds (its Python version and packages), as a run records it."""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

from packaging.utils import canonicalize_name

PACKAGES_FILE = ".mlopen-packages.json"


def describe_interpreter(python: Path) -> dict:
    """{"python": "3.11.7", "packages": {name: version}} of a venv, read from its files (pyvenv.cfg and
    the dist-info folders), never by starting it: a package's .pth file would run code on the worker.
    Computed at the first run on a venv and kept in it (read-only to pipelines) for the next."""
    prefix = Path(python).parent.parent
    cached = prefix / PACKAGES_FILE
    try:
        return json.loads(cached.read_text())
    except (OSError, ValueError):
        pass
    return write_packages(Path(python))


def write_packages(python: Path) -> dict:
    prefix = python.parent.parent
    config = {}
    for line in (prefix / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        config[key.strip()] = value.strip()
    version = config.get("version_info") or config.get("version") or ""
    site = prefix / "lib" / f"python{'.'.join(version.split('.')[:2])}" / "site-packages"
    packages = {
        canonicalize_name(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions(path=[str(site)])
        if dist.metadata["Name"]
    }
    described = {"python": version, "packages": dict(sorted(packages.items()))}
    # Whole or not at all: two workers' first runs on one venv may write it at once.
    staging = prefix / f"{PACKAGES_FILE}.{os.getpid()}"
    staging.write_text(json.dumps(described))
    staging.replace(prefix / PACKAGES_FILE)
    return described


def requirements_text(environment: dict) -> str:
    """A run's recorded environment as a requirements file: `pip install -r` (on that Python) gets
    the same packages elsewhere."""
    header = (
        f"# Python {environment.get('python') or '?'}, runtime {environment.get('runtime') or '?'} "
        f"(lock {str(environment.get('digest') or '?')[:16]})\n"
    )
    packages = environment.get("packages") or {}
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(packages.items()))
