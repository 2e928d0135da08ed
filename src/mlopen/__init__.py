"""mlopen: a self-hosted platform for running machine-learning pipelines."""

__version__ = "0.1.0"
