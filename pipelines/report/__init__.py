"""The paper-style results table and plot, from a sweep's per-cell test accuracies."""
