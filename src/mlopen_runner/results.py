"""Turn what run_pipeline returned into plain, strict JSON (child side, standard library only).

Output shape: {"columns", "data", "graphs", "images", "text", "warnings"}; see docs/RUNNER_SPEC.md.
Images (matplotlib figures, PIL images, image bytes and files) are written to files by an
ImageWriter (mlopen_runner.images); the result lists them by file name.
"""

from __future__ import annotations

import array
import base64
import datetime
import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from mlopen_runner.images import ImageWriter, is_image

KNOWN_KEYS = ("data", "columns", "graphs", "text", "imgs", "images")
# The fork's "imgs" (file names, or images) and "images" are one list of images.
IMAGE_KEYS = ("imgs", "images")

# plotly.offline.plot(..., output_type="div") embeds `Plotly.newPlot("id", data, layout, config)`.
_NEW_PLOT_CALL = re.compile(r"""Plotly\.newPlot\(\s*(?:"[^"]*"|'[^']*')\s*,\s*""")
_ARGUMENT_SEPARATOR = re.compile(r"\s*,\s*")

# plotly >= 6 stores numpy arrays as {"dtype": "f8", "bdata": base64}; these map to array codes.
_TYPED_ARRAY_CODES = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d"}

# Recognised by type name, since this module cannot import pandas or numpy: pandas.NA / NaT
# are missing values (null, not the text "<NA>"), and numpy datetime64[ns].tolist() would give a
# bare integer, so those are shown as their text.
_MISSING_TYPE_NAMES = ("NAType", "NaTType")
_NUMPY_TIME_TYPE_NAMES = ("datetime64", "timedelta64")


def normalize_result(returned: object, images: ImageWriter | None = None) -> dict[str, Any]:
    """`images` writes the images the result holds; without one (no folder to write to) they are
    dropped with a warning."""
    if not isinstance(returned, Mapping):
        raise TypeError(
            "run_pipeline must return a dict with any of data, columns, graphs, text; "
            f"it returned {type(returned).__name__}"
        )
    columns, data = _table(returned.get("columns"), returned.get("data"))
    text = returned.get("text")
    warnings = [
        f"run_pipeline returned an unknown key {key!r}; only {', '.join(KNOWN_KEYS)} are shown"
        for key in returned
        if key not in KNOWN_KEYS
    ]
    found: list[tuple[object, str]] = []
    graphs = _graphs(returned.get("graphs"), found)
    for key in IMAGE_KEYS:
        found += _image_items(key, returned.get(key), warnings)
    kept: list[dict[str, str]] = []
    if images is not None:
        for image, label in found:
            images.add(image, label)
        kept, image_warnings = images.finish()
        warnings += image_warnings
    elif found:
        warnings.append(f"{len(found)} image(s) were dropped: this result has no folder to keep them in")
    return {
        "columns": columns,
        "data": data,
        "graphs": graphs,
        "images": kept,
        "text": None if text is None else str(to_cell(text)),
        "warnings": warnings,
    }


def _image_items(key: str, value: object, warnings: list[str]) -> list[tuple[object, str]]:
    """(image or file name, label) for each item of "imgs" / "images"; other items are warned about."""
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    found = []
    for index, item in enumerate(items):
        if item is None:
            continue
        if isinstance(item, str) or is_image(item):
            found.append((item, f"{key}-{index + 1}"))
        else:
            warnings.append(
                f"{key}[{index}] is a {type(item).__name__}, not an image or an image file's name; it is not shown"
            )
    return found


def dumps_strict(value: object) -> str:
    """JSON a browser can parse: NaN/Infinity were already turned into null or text."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


# Cells of these exact types are JSON scalars as they are. Checked first: a table's cells are
# mostly these, and the general path (numpy and pandas scalars, dates) cost 0.26 ms per 700 cells.
_JSON_SCALAR_TYPES = frozenset({str, int, bool, type(None)})


def to_cell(value: object) -> Any:
    """One table cell as a JSON scalar."""
    kind = type(value)
    if kind in _JSON_SCALAR_TYPES:
        return value
    if kind is float:
        return _finite_or_none(value)  # type: ignore[arg-type]  # exactly a float
    value = _unboxed(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return str(value)


def to_jsonable(value: object) -> Any:
    """Any nested structure (figures, param defaults) as plain JSON values."""
    if isinstance(value, Mapping):
        if _is_typed_array(value):
            return to_jsonable(_decode_typed_array(value))
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    to_plotly_json = getattr(value, "to_plotly_json", None)
    if callable(to_plotly_json):
        return to_jsonable(to_plotly_json())
    value = _unboxed(value)
    if isinstance(value, (list, tuple, Mapping)):
        return to_jsonable(value)
    return to_cell(value)


def _unboxed(value: object) -> Any:
    """numpy/pandas scalars and arrays as Python values."""
    type_name = type(value).__name__
    if type_name in _MISSING_TYPE_NAMES:
        return None
    if type_name in _NUMPY_TIME_TYPE_NAMES:
        return str(value)
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _finite_or_none(number: float) -> float | str | None:
    if math.isnan(number):
        return None
    return number if math.isfinite(number) else str(number)


def _table(columns: Any, data: Any) -> tuple[list[str] | None, list[list[Any]] | None]:  # a pipeline's values
    if data is None:
        rows = None
    elif _is_data_frame(data):
        columns = data.columns if columns is None else columns
        rows = [_row(index, row, None) for index, row in enumerate(data.itertuples(index=False, name=None))]
    else:
        given = _listed(data)
        if columns is None and given and isinstance(given[0], Mapping):
            columns = list(given[0])
        rows = [_row(index, row, columns) for index, row in enumerate(given)]
    return (None if columns is None else [str(to_cell(name)) for name in columns]), rows


def _is_data_frame(value: object) -> bool:
    return hasattr(value, "columns") and hasattr(value, "itertuples")


def _listed(data: Any) -> list[Any]:
    if isinstance(data, (str, bytes, Mapping)) or not hasattr(data, "__iter__"):
        raise TypeError(f"data is a {type(data).__name__}; it must be a list of rows")
    return list(data)


def _row(index: int, row: Any, columns: Any) -> list[Any]:
    if isinstance(row, Mapping):
        # Dict rows are laid out in column order, whatever order their keys came in.
        cells = [row.get(name) for name in columns] if columns is not None else list(row.values())
    elif isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
        raise TypeError(f"data row {index} is a {type(row).__name__}; rows must be lists or tuples")
    else:
        cells = row
    return [to_cell(cell) for cell in cells]


def _graphs(graphs: object, images: list[tuple[object, str]]) -> list[dict[str, Any]]:
    """The graphs as figures or HTML; images among them (a matplotlib figure...) go to `images`."""
    if graphs is None:
        return []
    items = graphs if isinstance(graphs, (list, tuple)) else [graphs]
    shown = []
    for index, graph in enumerate(items):
        if graph is None:
            continue
        # Bytes are never a plotly graph: ones that are no image are dropped as images are.
        if isinstance(graph, (bytes, bytearray, memoryview)) or (
            not isinstance(graph, (str, Mapping)) and is_image(graph)
        ):
            images.append((graph, f"graph-{index + 1}"))
        else:
            shown.append(_graph(index, graph))
    return shown


def _graph(index: int, graph: object) -> dict[str, Any]:
    if isinstance(graph, str):
        figure = _figure_from_html(graph)
        return {"kind": "html", "html": graph} if figure is None else _figure(index, figure)
    if isinstance(graph, Mapping):
        return _figure(index, graph)
    for method in ("to_plotly_json", "to_dict"):
        convert = getattr(graph, method, None)
        if callable(convert):
            return _figure(index, convert())
    raise TypeError(
        f"graph {index} is a {type(graph).__name__}; expected a plotly figure, a figure dict, "
        "an HTML string from plotly.offline.plot or an image (a matplotlib figure, a PIL image, PNG/JPEG/SVG bytes)"
    )


def _figure(index: int, figure: object) -> dict[str, Any]:
    if not isinstance(figure, Mapping) or "data" not in figure:
        raise TypeError(
            f'graph {index} ({type(figure).__name__}) has no \'data\'; a figure is {{"data": [...], "layout": {{...}}}}'
        )
    data = to_jsonable(figure["data"])
    layout = to_jsonable(figure.get("layout") or {})
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not isinstance(layout, dict):
        raise TypeError(f"graph {index}: 'data' must be a list of traces and 'layout' a dict")
    return {"kind": "figure", "figure": {"data": data, "layout": layout}}


def _figure_from_html(html: str) -> dict[str, Any] | None:
    """The figure inside a plotly.offline.plot div, or None when it cannot be read safely."""
    calls = list(_NEW_PLOT_CALL.finditer(html))
    if len(calls) != 1:
        return None
    decoder = json.JSONDecoder()
    try:
        data, end = decoder.raw_decode(html, calls[0].end())
        separator = _ARGUMENT_SEPARATOR.match(html, end)
        layout, _ = decoder.raw_decode(html, separator.end()) if separator else ({}, end)
    except ValueError:
        return None
    return {"data": data, "layout": layout}


def _is_typed_array(value: Mapping[str, Any]) -> bool:
    return set(value) in ({"dtype", "bdata"}, {"dtype", "bdata", "shape"}) and value["dtype"] in _TYPED_ARRAY_CODES


def _decode_typed_array(value: Mapping[str, Any]) -> list[Any]:
    numbers = array.array(_TYPED_ARRAY_CODES[value["dtype"]], base64.b64decode(value["bdata"]))
    if sys.byteorder == "big":  # plotly encodes little-endian
        numbers.byteswap()
    flat = numbers.tolist()
    shape = [int(size) for size in str(value.get("shape", "")).split(",") if size.strip()]
    if len(shape) != 2:
        return flat
    width = shape[1]
    return [flat[start : start + width] for start in range(0, len(flat), width)]
