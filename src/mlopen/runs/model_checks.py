"""Train → run checks: does a run's input look like the table its model was trained on?

The model keeps its training table's schema (TrainedModel.input_schema, taken when it was stored);
the input's is read once and kept on the dataset (mlopen.datasets.schemas). The answer is a list of
warnings shown on the run form before it starts and kept on the run; a run is never refused for it.
"""

from __future__ import annotations

from mlopen.datasets import schemas
from mlopen.datasets.models import Dataset
from mlopen.pipelines.models import TrainedModel


def input_warnings(model: TrainedModel | None, dataset: Dataset | None) -> list[dict]:
    """[{kind, column, message}] where ``dataset`` differs from ``model``'s training table."""
    if model is None or dataset is None or not model.input_schema or not schemas.is_tabular(dataset):
        return []
    return schemas.compare(model.input_schema, schemas.schema_of(dataset), f"{dataset.name!r}")
