"""Legacy `io_handler`: control files call `io.save_pipeline(models, args, name)`."""

from mlopen_runner.sdk import log_metric, progress, save_pipeline

__all__ = ["log_metric", "progress", "save_pipeline"]
