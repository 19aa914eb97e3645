"""Labeled-fraction finetune sweeps on Ray Tune: fraction x seed x init x hyper-parameters."""
