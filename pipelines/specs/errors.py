"""The family of errors a user can fix: each message is one sentence saying what was wrong
and how to fix it. The CLI prints these and exits with status 2; anything else is a bug and
keeps its traceback."""

from __future__ import annotations


class SelfieError(Exception):
    """A problem in the user's input, data or environment, explained in one sentence."""


class DataError(SelfieError):
    """An ingested data dir that is missing, incomplete or changed since ingest."""


class Interrupted(SelfieError):
    """A run stopped by its user (Ctrl+C) before it finished: its state is kept, and the
    same command with --resume continues it."""
