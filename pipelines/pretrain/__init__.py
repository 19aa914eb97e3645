"""Selfie pretraining on Ray Train: the per-worker loop and the driver around it."""
