"""The control service: job specs in over REST, Ray Jobs underneath, MLflow history out.

Imports no torch: it validates specs with the pipelines' spec models and hands them to Ray.
"""
