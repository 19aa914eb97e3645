"""`selfie ingest`: a source in; WebDataset shards, label sidecars and a manifest out.

The writing side of the data; `pipelines.data` is the reading side."""
