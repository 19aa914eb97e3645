"""Ctrl+C during a Tune experiment, noticed.

On Ctrl+C Tune saves its experiment state and `Tuner.fit()` returns normally: the trials it
stopped are marked TERMINATED like finished ones, and trials never started are simply
absent. A sweep that went on would choose the replicates' settings from a partial search.
So while a phase runs, Ctrl+C comes to us first: we note it and pass it on to Tune as its
other stop signal (SIGUSR1, the same graceful stop), and the driver stops after the phase
with `Interrupted` (the saved state is what `--resume` continues). A second Ctrl+C raises
KeyboardInterrupt at once, as Tune's own handler would.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines.errors import Interrupted

_TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


class _Watch:
    def __init__(self) -> None:
        self.interrupted = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        os.kill(os.getpid(), signal.SIGUSR1)  # Tune: save the state, stop the trials


@contextmanager
def stop_on_interrupt(what: str) -> Iterator[None]:
    """Run a Tune experiment (`what` names it in the message); if the user pressed Ctrl+C
    meanwhile, raise `Interrupted` once Tune has saved its state."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; Tune does the same
        return
    watch = _Watch()
    previous_handler = signal.getsignal(signal.SIGINT)
    previous_env = os.environ.get(_TUNE_SIGINT_ENV)
    os.environ[_TUNE_SIGINT_ENV] = "1"  # Tune leaves SIGINT to us (it still takes SIGUSR1)
    signal.signal(signal.SIGINT, watch)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        if previous_env is None:
            os.environ.pop(_TUNE_SIGINT_ENV, None)
        else:
            os.environ[_TUNE_SIGINT_ENV] = previous_env
    if watch.interrupted:
        raise Interrupted(
            f"{what} was interrupted (Ctrl+C) before it finished: its state is saved, and the "
            "same command with --resume continues it"
        )
