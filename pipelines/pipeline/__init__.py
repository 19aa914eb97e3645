"""`selfie pipeline`: ingest, pretrain, sweep and report as stages of one tracked run."""
