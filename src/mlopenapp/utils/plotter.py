"""Legacy chart helpers, with the names, arguments and return kinds of the original mlopen.

pie_plot_from_lists returns an HTML div; the plotlify_* helpers return plotly figure dicts.
plotly is imported only by the helper that needs it: most control files never draw a pie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def pie_plot_from_lists(
    labels: Iterable[Any] | None = None, values: Iterable[Any] | None = None, title: str | None = None
) -> str:
    import plotly.graph_objects as go
    import plotly.offline

    figure = go.Figure(go.Pie(labels=_listed(labels), values=_listed(values)), layout={"title": {"text": title}})
    return plotly.offline.plot(figure, output_type="div", include_plotlyjs=False, auto_open=False)


def plotlify_pie_js(xy: Any = None, description: str = "") -> dict[str, Any]:
    """A pie of `xy`: a dict or a sequence of (label, value) pairs."""
    pairs = _pairs(xy)
    trace = {"type": "pie", "labels": [str(label) for label, _ in pairs], "values": [_plain(v) for _, v in pairs]}
    return {"data": [trace], "layout": _layout(description)}


def plotlify_scatter_js(
    xy: Any = None,
    x: Any = None,
    y: Any = None,
    xtag: str | None = None,
    ytag: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    """A scatter of `x` against `y`, or of `xy` (label -> value) as the original drew it:
    values along the x axis, labels along the y axis. xtag / ytag title the axes."""
    data = []
    pairs = _pairs(xy)
    if pairs:
        data.append({"type": "scatter", "x": [_plain(v) for _, v in pairs], "y": [_plain(k) for k, _ in pairs]})
    elif x is not None and y is not None:
        data.append({"type": "scatter", "x": _listed(x), "y": _listed(y)})
    layout = _layout(description)
    for axis, tag in (("xaxis", xtag), ("yaxis", ytag)):
        if tag:
            layout[axis] = {"title": {"text": str(tag)}}
    return {"data": data, "layout": layout}


def _layout(description: str | None) -> dict[str, Any]:
    return {"title": {"text": description or ""}}


def _pairs(xy: Any) -> list[tuple[Any, Any]]:
    if xy is None:
        return []
    items = xy.items() if isinstance(xy, Mapping) else xy
    return [(label, value) for label, value in items]


def _listed(values: Iterable[Any] | None) -> list[Any]:
    return [] if values is None else [_plain(value) for value in values]


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers, so the figure dict is plain data."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value
