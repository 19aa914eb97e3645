"""Ctrl+C during a Ray Tune or Ray Train run, handled so that nothing goes on half-done.

Tune: on Ctrl+C Tune saves its experiment state and `Tuner.fit()` returns normally, the
trials it stopped marked TERMINATED like finished ones and those never started absent. A
sweep that went on would choose the replicates' settings from a partial search. So while a
phase runs, Ctrl+C comes to us (Tune is told to leave SIGINT alone): we note it and hand it
to Tune as its other stop signal, SIGUSR1 (the same graceful stop: state saved, trials
stopped), and once `fit()` returns the sweep stops with `Interrupted`; `--resume` continues
from the saved state. Before Tune has installed its SIGUSR1 handler (its setup, the first
seconds of a phase) there is nothing to save: Ctrl+C then stops at once. A second Ctrl+C
always stops at once.

Train: Ray Train installs its own SIGINT handler for a run (and leaves it installed after;
`restore_sigint` puts the previous one back). Ray 2.60's handler asks the run's controller to
abort and waits for the answer from inside `fit()`'s own wait; the controller dies answering,
and the process exits at once with status 1 (a `SystemExit` raised in `ray.get`), its MLflow
run left RUNNING. `interruptible_trainer` replaces that handler: it asks for the abort without
waiting and raises `KeyboardInterrupt`, so Ctrl+C (or a cancel's SIGTERM) stops a
pretraining as it stops anything else (the last checkpoint kept for `--resume`); the driver
then waits for the abort to finish before the job exits.

SIGTERM: how a job is cancelled over REST (Ray Jobs' stop sends it to the entrypoint's
process group; the local backend too). `sigterm_as_ctrl_c` makes it the same interruption as
Ctrl+C: inside a Tune phase the graceful stop above, anywhere else `KeyboardInterrupt` at
once, so the job's MLflow run ends KILLED and the job exits as an interrupted one. `ray.init`
installs its own SIGTERM handler (exit at once, status 1); `keep_sigterm` keeps ours.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from pipelines.specs.errors import Interrupted

# Read by Tune at the start of every run; ours is the only SIGINT handler our Tune runs need.
_TUNE_SIGINT_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


def _tune_not_armed(signum: int, frame: object) -> None:
    """SIGUSR1's handler until Tune installs its own: the mark that it has not yet."""


class _Watch:
    def __init__(self) -> None:
        self.interrupted = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.interrupted or signal.getsignal(signal.SIGUSR1) is _tune_not_armed:
            raise KeyboardInterrupt  # a second Ctrl+C, or Tune not running yet
        self.interrupted = True
        signal.raise_signal(signal.SIGUSR1)  # Tune: save the state, stop the trials


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def stop_on_interrupt(what: str) -> Iterator[None]:
    """Run one Tune experiment inside; if the user pressed Ctrl+C meanwhile, raise
    `Interrupted` (naming `what`) once Tune has saved its state."""
    if not _on_main_thread():
        yield  # signals reach the main thread only (Tune installs nothing either)
        return
    if os.environ.get(_TUNE_SIGINT_ENV) != "1":
        os.environ[_TUNE_SIGINT_ENV] = "1"  # set once, never unset: no later write races
    watch = _Watch()
    previous_int = signal.getsignal(signal.SIGINT)
    previous_usr1 = signal.getsignal(signal.SIGUSR1)
    signal.signal(signal.SIGUSR1, _tune_not_armed)  # not a stale handler of an earlier run
    signal.signal(signal.SIGINT, watch)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGUSR1, previous_usr1)
    if watch.interrupted:
        raise Interrupted(
            f"{what} was interrupted (Ctrl+C): its state is saved, and the same command with "
            "--resume continues it"
        )


class _Sigterm:
    """SIGTERM as Ctrl+C: our Tune watch when a phase runs, else stop at once. Once only: a
    stop often arrives twice (a process-group signal, then the local runner passing it on),
    and a second interruption must not cut short the first one's clean-up (marking the
    MLflow run KILLED); a stop that does not end is ended by SIGKILL, not by us."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.received:
            return
        self.received = True
        handler = signal.getsignal(signal.SIGINT)
        if isinstance(handler, (_Watch, _AbortTrain)):
            handler(signal.SIGINT, frame)  # Tune's graceful stop; Train's abort, then raise
            return
        raise KeyboardInterrupt


@contextmanager
def _put_back(signum: int, only_if: Callable[[object], bool] = lambda _: True) -> Iterator[bool]:
    """Around a block that may replace `signum`'s handler: put the one before it back (when
    `only_if` says so). Yields whether handlers can be set here: signals reach the main
    thread only, so elsewhere there is nothing to install or put back."""
    if not _on_main_thread():
        yield False
        return
    previous = signal.getsignal(signum)
    try:
        yield True
    finally:
        if only_if(previous):
            signal.signal(signum, previous)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Around a whole job: SIGTERM interrupts it as Ctrl+C does (see the module's doc)."""
    with _put_back(signal.SIGTERM) as on_main_thread:
        if on_main_thread:
            signal.signal(signal.SIGTERM, _Sigterm())
        yield


@contextmanager
def keep_sigterm() -> Iterator[None]:
    """Around `ray.init`, which replaces the SIGTERM handler with an immediate exit: while a
    job runs, put ours back (Ray's atexit hook still stops the local Ray it started). Outside
    a job Ray's stays: it stops that local Ray on SIGTERM."""
    with _put_back(signal.SIGTERM, only_if=lambda previous: isinstance(previous, _Sigterm)):
        yield


class _AbortTrain:
    """SIGINT's handler while a Ray Train run is in `fit()` (and SIGTERM's, through
    `_Sigterm`): ask the run's controller to abort, without waiting, and interrupt `fit()`."""

    def __init__(self, controller) -> None:
        self.controller = controller
        self.aborting = None  # the abort call's reference, once asked

    def __call__(self, signum: int, frame: object) -> None:
        if self.aborting is None:
            self.aborting = self.controller.abort.remote()
        raise KeyboardInterrupt

    def wait(self, timeout_s: float) -> None:
        """Until the abort is done: the workers stopped and Ray Train's own clean-up actors
        told to stop (a process that exits before then leaves them polling a vanishing
        cluster, printing tracebacks). The controller exits as it answers."""
        if self.aborting is None:
            return
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        with suppress(RayActorError, GetTimeoutError):
            ray.get(self.aborting, timeout=timeout_s)


def interruptible_trainer(trainer_cls: type) -> type:
    """`trainer_cls` (a Ray Train trainer) whose Ctrl+C handler interrupts `fit()` with
    `KeyboardInterrupt` after asking the controller to abort (see the module's doc);
    `wait_for_abort()` then waits for that abort to finish."""

    class Interruptible(trainer_cls):
        _interrupt: _AbortTrain | None = None

        def _register_sigint_handler(self, controller) -> None:  # Ray Train's hook
            self._interrupt = _AbortTrain(controller)
            signal.signal(signal.SIGINT, self._interrupt)

        def wait_for_abort(self, timeout_s: float = 60.0) -> None:
            if self._interrupt is not None:
                self._interrupt.wait(timeout_s)

    Interruptible.__name__ = Interruptible.__qualname__ = f"Interruptible{trainer_cls.__name__}"
    return Interruptible


@contextmanager
def restore_sigint() -> Iterator[None]:
    """Put back the SIGINT handler a Ray Train run replaced (it leaves its own installed)."""
    with _put_back(signal.SIGINT):
        yield
