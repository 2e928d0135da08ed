"""Sentiment of product reviews: TF-IDF features and a logistic-regression classifier.

train() learns from a CSV of labelled reviews; run_pipeline() labels new ones, read from a text
file (one review per line) or from a CSV with a text column.
"""
import html
import os

import numpy as np
import pandas
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from mlopenapp.utils import io_handler as io
from mlopenapp.utils import plotter

import text_cleaning  # support file, uploaded beside this control file

TEXT_COLUMNS = ("text", "review", "statement", "sentence", "comment")
LABEL_COLUMNS = ("label", "sentiment", "class", "target")


def get_params(run=True):
    if not run:
        params = {
            "epochs": ("integer", {"default": 10}),
            "max_features": ("integer", {"blank": True}),
            "lowercase": ("bool", {"default": True}),
        }
        return params
    else:
        return {"text_column": ("string", {"default": "text"})}


def train(inpt, params=None):
    """Fits the vectorizer and the classifier, one pass over the training reviews per epoch."""
    if inpt is None:
        raise ValueError("Pick a training set: a CSV with a text column and a label column (try reviews_train.csv).")
    params = params or {}
    epochs = int(params.get("epochs") or 10)
    max_features = params.get("max_features")
    lowercase = bool(params.get("lowercase", True))
    if not 1 <= epochs <= 500:
        raise ValueError("epochs must be between 1 and 500.")
    if max_features is not None and max_features < 1:
        raise ValueError("max_features must be at least 1 (or left blank for no limit).")

    print("Preparing data. . .")
    df = pandas.read_csv(inpt)
    text_column = _pick_column(df, TEXT_COLUMNS, "text", fallback=0)
    label_column = _pick_column(df, LABEL_COLUMNS, "label", fallback=-1)
    df = df[[text_column, label_column]].dropna()
    corpus = [text_cleaning.clean(t, lowercase) for t in df[text_column]]
    labels = df[label_column].astype(str).str.strip().to_numpy()
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError(f"The {label_column!r} column needs at least two different labels; it only has {classes}.")
    print(f"{len(corpus)} reviews, labels: {', '.join(f'{c} ({(labels == c).sum()})' for c in classes)}")

    corpus_train, corpus_val, y_train, y_val = train_test_split(
        corpus, labels, test_size=0.2, random_state=0, stratify=labels)
    tfidf = TfidfVectorizer(max_features=max_features, lowercase=lowercase, ngram_range=(1, 2), sublinear_tf=True)
    X_train = tfidf.fit_transform(corpus_train)
    X_val = tfidf.transform(corpus_val)
    print(f"Vocabulary: {len(tfidf.vocabulary_)} terms")

    # Logistic regression fitted by gradient descent, one pass per epoch, so the loss can be charted.
    classifier = SGDClassifier(loss="log_loss", alpha=1e-4, learning_rate="constant", eta0=0.2, random_state=0)
    rng = np.random.default_rng(0)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(X_train.shape[0])
        classifier.partial_fit(X_train[order], y_train[order], classes=classes)
        loss = log_loss(y_train, classifier.predict_proba(X_train), labels=classifier.classes_)
        val_loss = log_loss(y_val, classifier.predict_proba(X_val), labels=classifier.classes_)
        accuracy = (classifier.predict(X_val) == y_val).mean()
        io.log_metric("loss", loss, step=epoch)
        io.log_metric("validation loss", val_loss, step=epoch)
        io.log_metric("validation accuracy", accuracy, step=epoch)
        io.progress(epoch / epochs, f"epoch {epoch} of {epochs}: loss {loss:.3f}")
        print(f"epoch {epoch:3d}  loss {loss:.4f}  validation loss {val_loss:.4f}  validation accuracy {accuracy:.1%}")

    models = [(classifier, "classifier")]
    args = [(tfidf, "tfidf_vect")]
    io.save_pipeline(models, args, os.path.basename(__file__))
    print("Model saved.")


def run_pipeline(input, model, args, params=None):
    """Predicts the sentiment of each review in the input."""
    if model is None or "tfidf_vect" not in args:
        raise ValueError("This pipeline has not been trained yet: train it on reviews_train.csv first.")
    if input is None:
        raise ValueError("Pick the reviews to label: a text file with one review per line, or a CSV.")
    params = params or {}
    tfidf = args['tfidf_vect']
    statements = read_statements(input, params.get("text_column") or "text")
    if not statements:
        raise ValueError(f"{input.name} has no reviews in it.")

    X = tfidf.transform([text_cleaning.clean(s, tfidf.lowercase) for s in statements])
    probabilities = model.predict_proba(X)
    best = probabilities.argmax(axis=1)
    sentiments = model.classes_[best]
    confidence = probabilities.max(axis=1)

    preds = {'data': [], 'columns': [], 'graphs': None}
    for statement, sentiment, conf in zip(statements, sentiments, confidence):
        preds['data'].append([statement, sentiment, np.round(conf, 3)])
    preds['columns'] = ['text', 'sentiment', 'confidence']
    labels, counts = np.unique(sentiments, return_counts=True)
    div = plotter.pie_plot_from_lists(labels=[str(l) for l in labels], values=[int(c) for c in counts],
                                      title="Sentiment of the reviews")
    preds['graphs'] = [div]
    preds['text'] = summary(statements, sentiments, confidence, labels, counts)
    return preds


def read_statements(input, text_column):
    if input.name.lower().endswith(".csv"):
        df = pandas.read_csv(input)
        column = text_column if text_column in df.columns else _pick_column(df, TEXT_COLUMNS, "text", fallback=0)
        return [str(t).strip() for t in df[column].dropna() if str(t).strip()]
    input.open("r")
    return [line.strip() for line in input if line.strip()]


def _pick_column(df, names, what, fallback):
    lowered = {str(c).strip().lower(): c for c in df.columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    if len(df.columns) < 2:
        raise ValueError(f"Expected a CSV with a text column and a label column; found columns {list(df.columns)}.")
    return df.columns[fallback]


def summary(statements, sentiments, confidence, labels, counts):
    parts = ", ".join(f"<b>{c}</b> {html.escape(str(l))} ({c / len(statements):.0%})" for l, c in zip(labels, counts))
    least = int(confidence.argmin())
    return (
        f"<div>Labelled <b>{len(statements)}</b> reviews: {parts}.</div>"
        f"<div>Average confidence {confidence.mean():.0%}. The model was least sure about "
        f"<i>\u201c{html.escape(statements[least][:200])}\u201d</i> ({confidence[least]:.0%} {html.escape(str(sentiments[least]))}).</div>"
    )
