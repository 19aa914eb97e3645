"""Selfie pipelines: data ingest, Ray Train pretraining, Ray Tune sweeps, MLflow records, CLI."""
