"""Images in (CIFAR-10, folders, shipped digits, existing shards), WebDataset shards out, and
the loader that streams them to training workers."""
