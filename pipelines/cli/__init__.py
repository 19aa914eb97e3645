"""The `selfie` command: spec-generated verbs, the job entry Ray runs, and the runner both share."""
