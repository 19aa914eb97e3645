"""Runtime glue shared by every job kind: the Ray connection, placement, the tracked
MLflow run, interrupts and progress."""
