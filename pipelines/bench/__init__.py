"""Benchmarks behind `selfie bench ...`: each returns a JSON-able dict of figures from one run."""
