"""Legacy chart helpers, with the names, arguments and return kinds of the original mlopen and its fork.

pie_plot_from_lists, bar and custom_heatmap return HTML divs; the plotlify_* helpers return plotly
figure dicts; collect_imgs and detect_bbox (the fork's object-detection heatmaps) return numpy
arrays. plotly and numpy are imported only by the helper that needs them: most control files
never draw a pie.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def pie_plot_from_lists(
    labels: Iterable[Any] | None = None, values: Iterable[Any] | None = None, title: str | None = None
) -> str:
    import plotly.graph_objects as go  # noqa: PLC0415 - heavy: plotly only when a pipeline draws
    import plotly.offline  # noqa: PLC0415 - heavy: plotly only when a pipeline draws

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


def bar(df: Any, x_name: str, y_name: str) -> str:
    """The fork's bar chart of two columns of a DataFrame (plotly express), as an HTML div."""
    import plotly.express as px  # noqa: PLC0415 - heavy: plotly and numpy only in the helper that needs them

    return _div(px.bar(df, x=x_name, y=y_name))


def detect_bbox(img: Any, xmin: float, ymin: float, xmax: float, ymax: float) -> Any:
    """Add 1 to every pixel of the 2-D numpy array `img` outside the box (bounds inclusive), in
    place, and return it: stacking a class's boxes this way draws where that class is not."""
    import numpy as np  # noqa: PLC0415 - heavy: plotly and numpy only in the helper that needs them

    rows = np.arange(img.shape[0])
    columns = np.arange(img.shape[1])
    inside = ((rows >= ymin) & (rows <= ymax))[:, None] & ((columns >= xmin) & (columns <= xmax))[None, :]
    img += ~inside
    return img


HEATMAP_SIDE = 150  # the fork's images were 150 x 150


def collect_imgs(frames: Iterable[Any]) -> dict[str, list[Any]]:
    """The fork's heatmaps: for each DataFrame of detections (columns xmin, ymin, xmax, ymax), the
    mean of detect_bbox over its rows on a 150 x 150 image; `{"Heatmap": [array, ...]}`."""
    import numpy as np  # noqa: PLC0415 - heavy: plotly and numpy only in the helper that needs them

    heatmaps = []
    for frame in frames:
        image = np.zeros((HEATMAP_SIDE, HEATMAP_SIDE))
        for row in frame.itertuples():
            image = detect_bbox(image, row.xmin, row.ymin, row.xmax, row.ymax)
        with np.errstate(divide="ignore", invalid="ignore"):  # an empty frame gives NaN, as the fork's did
            heatmaps.append(image / len(frame))
    return {"Heatmap": heatmaps}


HEATMAP_GRID = (7, 4)  # the fork's subplot grid: rows, columns


def custom_heatmap(frames: Iterable[Any], class_names: Iterable[str]) -> str:
    """The fork's grid of heatmaps, one per class (collect_imgs), titled by `class_names`, as an HTML div."""
    import plotly.graph_objects as go  # noqa: PLC0415 - heavy: plotly and numpy only in the helper that needs them
    from plotly.subplots import make_subplots  # noqa: PLC0415 - heavy: plotly and numpy only in the helper that needs them

    rows, columns = HEATMAP_GRID
    figure = make_subplots(rows, columns, subplot_titles=list(class_names))
    for index, heatmap in enumerate(collect_imgs(frames)["Heatmap"]):
        row, column = divmod(index % (rows * columns), columns)
        figure.add_trace(go.Heatmap(z=heatmap), row + 1, column + 1)
    figure.update_layout(width=1500, height=2800)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, autorange="reversed")
    figure.update_traces(showscale=False)
    return _div(figure)


def _div(figure: Any) -> str:
    import plotly.offline  # noqa: PLC0415 - heavy: plotly and numpy only in the helper that needs them

    return plotly.offline.plot(figure, output_type="div", include_plotlyjs=False, auto_open=False)


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
