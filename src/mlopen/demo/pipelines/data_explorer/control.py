"""A first look at any CSV: the distribution of each numeric column, how the columns correlate,
and how the two most closely related numeric columns move together. Graphs only, no training.
"""
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlopenapp.utils import io_handler as io

MAX_COLUMNS = 12  # more than this many histograms stop being a "first look"
MAX_CATEGORIES = 10  # a text column with at most this many values colours the scatter plot


def get_params(run=True):
    if run:
        return {
            "chart": ("choice", {"choices": ["histogram", "box"], "default": "histogram"}),
            "bins": ("integer", {"default": 20}),
            "title": ("string", {"default": ""}),
            "include_heatmap": ("bool", {"default": True}),
        }
    return None


def train(inpt, params=None):
    print("The data explorer has nothing to train: run it on any CSV file.")


def run_pipeline(input, model, args, params=None):
    if input is None:
        raise ValueError("Pick a CSV file to explore (try iris.csv or housing.csv).")
    params = params or {}
    chart = params.get("chart") or "histogram"
    bins = int(params.get("bins") or 20)
    title = (params.get("title") or "").strip() or input.name
    if not 1 <= bins <= 500:
        raise ValueError("bins must be between 1 and 500.")

    df = pd.read_csv(input)
    numeric = df.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise ValueError(f"{input.name} has no numeric columns to chart (columns: {', '.join(map(str, df.columns))}).")
    if numeric.shape[1] > MAX_COLUMNS:
        print(f"Charting the first {MAX_COLUMNS} of {numeric.shape[1]} numeric columns.")
        numeric = numeric.iloc[:, :MAX_COLUMNS]
    group = _category_column(df)
    print(f"{len(df)} rows; numeric columns: {', '.join(numeric.columns)}"
          + (f"; coloured by {group}" if group else ""))

    graphs = [distribution_figure(numeric, chart, bins, title)]
    io.progress(0.4, "distributions drawn")
    if params.get("include_heatmap", True) and numeric.shape[1] >= 2:
        graphs.append(correlation_figure(numeric, title))
    if numeric.shape[1] >= 2:
        x, y = most_correlated_pair(numeric)
        graphs.append(scatter_figure(df, x, y, group, title))
    io.progress(1.0, "done")
    return {"graphs": graphs}


def most_correlated_pair(numeric):
    """The two columns with the strongest correlation (the first two when nothing correlates)."""
    corr = numeric.corr().abs()
    best, pair = -1.0, (numeric.columns[0], numeric.columns[1])
    for i, a in enumerate(corr.columns):
        for b in corr.columns[i + 1:]:
            if corr.loc[a, b] > best:  # NaN (a constant column) never wins
                best, pair = corr.loc[a, b], (a, b)
    return pair


def _category_column(df):
    for column in df.select_dtypes(exclude="number").columns:
        if 2 <= df[column].nunique() <= MAX_CATEGORIES:
            return column
    return None


def distribution_figure(numeric, chart, bins, title):
    columns = [str(c) for c in numeric.columns]
    cols = min(3, len(columns))
    rows = (len(columns) + cols - 1) // cols
    figure = make_subplots(rows=rows, cols=cols, subplot_titles=columns,
                           horizontal_spacing=0.08, vertical_spacing=min(0.12, 0.3 / rows))
    for index, column in enumerate(numeric.columns):
        values = numeric[column].dropna()
        if chart == "box":
            trace = go.Box(y=values, name=str(column), boxmean=True)
        else:
            trace = go.Histogram(x=values, nbinsx=bins, name=str(column))
        figure.add_trace(trace, row=index // cols + 1, col=index % cols + 1)
    kind = "Box plots" if chart == "box" else "Histograms"
    figure.update_layout(title={"text": f"{kind} of the numeric columns \u2014 {title}"}, showlegend=False,
                         height=max(350, 280 * rows), bargap=0.05)
    return figure


def correlation_figure(numeric, title):
    corr = numeric.corr().round(2)
    labels = [str(c) for c in corr.columns]
    figure = go.Figure(go.Heatmap(z=corr.values, x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu",
                                  reversescale=True, text=corr.values, texttemplate="%{text}",
                                  colorbar={"title": {"text": "r"}}))
    figure.update_layout(title={"text": f"Correlation between numeric columns \u2014 {title}"},
                         yaxis={"autorange": "reversed"}, height=max(350, 60 * len(labels) + 150))
    return figure


def scatter_figure(df, x, y, group, title):
    figure = go.Figure()
    if group is None:
        figure.add_trace(go.Scatter(x=df[x], y=df[y], mode="markers", name=f"{y} vs {x}"))
    else:
        for value, part in df.groupby(group, sort=True):
            figure.add_trace(go.Scatter(x=part[x], y=part[y], mode="markers", name=str(value)))
    figure.update_layout(title={"text": f"{y} against {x} \u2014 {title}"},
                         xaxis={"title": {"text": str(x)}}, yaxis={"title": {"text": str(y)}},
                         legend={"title": {"text": str(group)}} if group else {})
    return figure
