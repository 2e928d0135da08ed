"""Bench pipeline: logistic regression on four numeric features (see bench/README.md)."""

import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlopenapp.utils import io_handler as io

FEATURES = ["x1", "x2", "x3", "x4"]


def train(inpt, params=None):
    frame = pd.read_csv(inpt)
    model = LogisticRegression(max_iter=500).fit(frame[FEATURES], frame["label"])
    io.save_pipeline([(model, "logreg")], [(FEATURES, "features")], "bench_logreg")


def run_pipeline(input, model, args, params=None):
    frame = pd.read_csv(input)
    probability = model.predict_proba(frame[args["features"]])[:, 1]
    frame["probability"] = probability.round(6)
    frame["predicted"] = (probability >= 0.5).astype(int)
    columns = ["id", *args["features"], "probability", "predicted"]
    return {
        "columns": columns,
        "data": frame[columns].to_dict("split")["data"],
        "text": f"{int(frame['predicted'].sum())} of {len(frame)} rows predicted positive.",
    }
