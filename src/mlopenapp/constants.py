"""Legacy `mlopenapp.constants`, without Django: the original's names, with values a run can use.

Paths are relative to the run's working directory, which holds the original's layout
(mlopen_runner.legacy): CONTROL_DIR is the pipeline's own code folder. FILE_TYPES named Django
models and PARAM_MAP Django form fields; here they give the type names io.save takes and the
Python type each parameter arrives as.
"""

from __future__ import annotations

import os

from mlopen_runner.inputs import InputFile

FILE_TYPES = {"model": "model", "arg": "arg", "pipeline": "pipeline", "graphs": "graphs"}

STORAGE_DIR = os.path.join("mlopenapp", "storage")
FILE_DIRS = {
    "model": os.path.join(STORAGE_DIR, "models"),
    "arg": os.path.join(STORAGE_DIR, "args"),
    "pipeline": os.path.join(STORAGE_DIR, "pipelines"),
    "graphs": os.path.join(STORAGE_DIR, "graphs"),
}

CONTROL_DIR = os.path.join("mlopenapp", "pipelines")
USER_DATA_DIR = os.path.join("mlopenapp", "data", "user_data")
IMAGES_DIR = os.path.join("mlopenapp", "static", "images")

PARAM_MAP = {
    "string": str,
    "integer": int,
    "float": float,
    "choice": str,
    "file": InputFile,
    "upload": InputFile,
    "bool": bool,
}
