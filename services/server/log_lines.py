"""What counts as an error line in a job's log: one definition, read by the service (the
message of a failed job) and by the client's live view (the lines it shows as they come).

A job prints a user's mistake as `error: <sentence>` (the job entry) and a bug as a Python
traceback, whose last line is `SomeError: ...`; both match, Ray's chatter does not.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 500


def is_error_line(line: str) -> bool:
    text = line.strip()
    return text.startswith("error:") or "Error:" in text


def last_error_line(logs: str) -> str | None:
    """The last error line of a log (cut to a message's length), or None."""
    for line in reversed(logs.splitlines()):
        if is_error_line(line):
            return line.strip()[:MAX_MESSAGE_CHARS]
    return None
