"""k-nearest neighbours on a table of measurements (the iris flowers by default).

Written the way pipelines for the original mlopen were: no training phase, everything happens
in run_pipeline on the data the user picked.
"""
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from mlopenapp.utils import io_handler as io
from mlopenapp.utils import plotter

IRIS_NAMES = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def get_params(run=True):
    if run:
        params = {
            "n_neighbors": ("integer", {"default": 5}),
            "test_fraction": ("float", {"default": 0.3}),
            "weights": ("choice", {"choices": ["uniform", "distance"], "default": "uniform"}),
            "scale": ("bool", {"default": True}),
        }
        return params
    else:
        return ""


def train(inpt, params=None):
    print("k-NN has no separate training phase: it keeps the labelled samples and compares "
          "new ones with them when it runs. Run the pipeline on a labelled table instead.")


def read_table(input):
    """A CSV with a header, or the classic headerless iris.data layout."""
    input.open("r")
    dataset = pd.read_csv(input)
    if all(_is_number(name) for name in dataset.columns[:-1]):
        input.open("r")
        names = IRIS_NAMES if len(dataset.columns) == 5 else None
        dataset = pd.read_csv(input, header=None, names=names)
    return dataset.dropna()


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def run_pipeline(input, model, args, params=None):
    if input is None:
        raise ValueError("Pick a dataset to run on: a CSV whose last column is the class (try iris.csv).")
    params = params or {}
    k = int(params.get("n_neighbors", 5))
    test_fraction = float(params.get("test_fraction", 0.3))
    weights = params.get("weights") or "uniform"
    scale = params.get("scale", True)
    if k < 1:
        raise ValueError("n_neighbors must be at least 1.")
    if not 0.05 <= test_fraction <= 0.9:
        raise ValueError("test_fraction must be between 0.05 and 0.9.")

    dataset = read_table(input)
    label_column = dataset.columns[-1]
    features = dataset.iloc[:, :-1].select_dtypes("number")
    if features.shape[1] == 0:
        raise ValueError("The table needs numeric measurement columns before its last (class) column.")
    if pd.api.types.is_numeric_dtype(dataset[label_column]) and dataset[label_column].nunique() > 20:
        raise ValueError(f"The last column, {label_column}, holds {dataset[label_column].nunique()} different numbers; "
                         "k-NN here needs a class column last, like the species in iris.csv.")
    X = features.to_numpy(dtype=float)
    y = dataset[label_column].astype(str).to_numpy()
    samples = dataset.index.to_numpy() + 1  # row numbers as the user sees them in the file

    X_train, X_test, y_train, y_test, s_train, s_test = train_test_split(
        X, y, samples, test_size=test_fraction, random_state=42, stratify=_stratify(y))
    if k > len(X_train):
        raise ValueError(f"n_neighbors is {k} but only {len(X_train)} samples are left for reference; "
                         "lower n_neighbors or test_fraction.")
    print(f"{len(X_train)} reference samples, {len(X_test)} test samples, k={k}, weights={weights}, scale={scale}")

    if scale:
        scaler = StandardScaler()
        scaler.fit(X_train)
        X_train = scaler.transform(X_train)
        X_test_scaled = scaler.transform(X_test)
    else:
        X_test_scaled = X_test

    classifier = KNeighborsClassifier(n_neighbors=k, weights=weights)
    classifier.fit(X_train, y_train)
    y_pred = classifier.predict(X_test_scaled)
    io.progress(0.8, "classified the test samples")

    correct = y_pred == y_test
    accuracy = correct.mean()

    preds = {}
    preds['data'] = [[int(s), t, p, "yes" if c else "no"] for s, t, p, c in zip(s_test, y_test, y_pred, correct)]
    preds['columns'] = ["sample", f"true {label_column}", "predicted", "correct"]
    preds['graphs'] = [
        scatter_of_predictions(X_test, y_pred, correct, list(features.columns)),
        plotter.pie_plot_from_lists(labels=["correct", "misclassified"],
                                    values=[int(correct.sum()), int((~correct).sum())],
                                    title="Test samples classified correctly"),
    ]
    preds['text'] = summary(accuracy, k, weights, scale, len(X_train), y_test, y_pred)
    return preds


def _stratify(y):
    counts = pd.Series(y).value_counts()
    return y if counts.min() >= 2 else None


def scatter_of_predictions(X_test, y_pred, correct, names):
    """The test samples on the two most telling measurements, one colour per predicted class."""
    # Petal length and width separate the iris species best; other tables use their first two columns.
    if "petal_length" in names and "petal_width" in names:
        xi, yi = names.index("petal_length"), names.index("petal_width")
    else:
        xi, yi = 0, min(1, len(names) - 1)
    figure = None
    for index, label in enumerate(sorted(set(y_pred))):
        mask = y_pred == label
        part = plotter.plotlify_scatter_js(x=X_test[mask, xi].tolist(), y=X_test[mask, yi].tolist(),
                                           xtag=names[xi], ytag=names[yi],
                                           description="Test samples by predicted class")
        trace = part['data'][0]
        trace.update(mode="markers", name=f"predicted {label}",
                     marker={"size": 9, "color": COLOURS[index % len(COLOURS)]})
        if figure is None:
            figure = part
        else:
            figure['data'].append(trace)
    wrong = ~correct
    if wrong.any():
        figure['data'].append({
            "x": X_test[wrong, xi].tolist(), "y": X_test[wrong, yi].tolist(), "type": "scatter", "mode": "markers",
            "name": "misclassified", "marker": {"symbol": "x-open", "size": 16, "color": "#d62728"},
        })
    figure['layout']['xaxis'] = {"title": {"text": names[xi]}}
    figure['layout']['yaxis'] = {"title": {"text": names[yi]}}
    return figure


def summary(accuracy, k, weights, scale, n_reference, y_test, y_pred):
    rows = ""
    for label in sorted(set(y_test)):
        mask = y_test == label
        rows += f"<li>{label}: {int((y_pred[mask] == label).sum())} of {int(mask.sum())} recognised</li>"
    return f"""
    <div><b>Accuracy: {accuracy:.1%}</b> on {len(y_test)} held-out samples, using {n_reference} labelled
    reference samples, <i>k</i> = {k}, {weights} weights{", standardised features" if scale else ""}.</div>
    <ul>{rows}</ul>
    <div>This is a standard implementation of the <b>k-nearest neighbours algorithm</b>
    (<b><i>k</i>-NN</b>): a sample gets the class most common among the <i>k</i> labelled samples closest to
    it. It was first developed by Evelyn Fix and Joseph Hodges in 1951<sup>[1]</sup> and later expanded by
    Thomas Cover<sup>[2]</sup>. It needs no training phase: the labelled samples are the model.</div>
    <div><sup>[1]</sup> Fix, E. and Hodges, J. L., <i>Discriminatory analysis, nonparametric discrimination</i>,
    1951. <sup>[2]</sup> Cover, T. and Hart, P., <i>Nearest neighbor pattern classification</i>, 1967.
    See also <a href="https://en.wikipedia.org/wiki/K-nearest_neighbors_algorithm">k-NN on Wikipedia</a>.</div>
    """

