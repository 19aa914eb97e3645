"""Ctrl+C around Tune and Train runs, on real signals (no Ray: the handlers are the unit)."""

from __future__ import annotations

import signal

import pytest

from pipelines.runtime.interrupt import restore_sigint, stop_on_interrupt
from pipelines.specs.errors import Interrupted


def _handlers() -> tuple:
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)


def test_ctrl_c_while_tune_runs_is_handed_to_tune_and_stops_after_the_phase() -> None:
    before, tune_stops = _handlers(), []
    phase = stop_on_interrupt("the sweep (search phase)")
    with pytest.raises(Interrupted, match=r"the sweep \(search phase\) was interrupted"), phase:
        # What Tune does at the start of its run: its graceful stop on SIGUSR1.
        signal.signal(signal.SIGUSR1, lambda signum, frame: tune_stops.append(signum))
        signal.raise_signal(signal.SIGINT)
        assert tune_stops == [signal.SIGUSR1]  # Tune was told; the phase goes on to save
    assert _handlers() == before


def test_ctrl_c_before_tune_has_started_or_twice_stops_at_once() -> None:
    before = _handlers()
    with pytest.raises(KeyboardInterrupt), stop_on_interrupt("the sweep (search phase)"):
        signal.raise_signal(signal.SIGINT)  # Tune has not installed its handler yet
    assert _handlers() == before
    with pytest.raises(KeyboardInterrupt), stop_on_interrupt("the sweep (search phase)"):
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
    assert _handlers() == before


def test_a_phase_without_ctrl_c_ends_normally_and_leaves_no_stale_handler() -> None:
    before = _handlers()
    with stop_on_interrupt("the sweep (replicates phase)"):
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)  # Tune's, left installed
    assert _handlers() == before


def test_the_handler_a_train_run_installs_is_taken_back() -> None:
    before = signal.getsignal(signal.SIGINT)
    with restore_sigint():
        signal.signal(signal.SIGINT, lambda signum, frame: None)  # as Ray Train does
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_is_ctrl_c_for_a_whole_job() -> None:
    """A cancel's SIGTERM: at once outside a Tune phase, handed to Tune inside one; the
    handler before the job is back after it."""
    from pipelines.runtime.interrupt import sigterm_as_ctrl_c

    before, cleaned_up = signal.getsignal(signal.SIGTERM), []
    with pytest.raises(KeyboardInterrupt), sigterm_as_ctrl_c():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:  # the clean-up a stop runs: a second SIGTERM does not cut it short
            signal.raise_signal(signal.SIGTERM)
            cleaned_up.append(True)
    assert cleaned_up == [True] and signal.getsignal(signal.SIGTERM) is before
    tune_stops: list[int] = []
    phase = stop_on_interrupt("the sweep (search phase)")
    with pytest.raises(Interrupted), sigterm_as_ctrl_c(), phase:
        signal.signal(signal.SIGUSR1, lambda signum, frame: tune_stops.append(signum))
        signal.raise_signal(signal.SIGTERM)
        assert tune_stops == [signal.SIGUSR1]  # the graceful stop, as for Ctrl+C


def test_ray_init_does_not_take_sigterm_from_a_job() -> None:
    """`ray.init` installs its own SIGTERM handler: inside a job ours comes back; outside
    one Ray's stays (it stops the local Ray it started)."""
    from pipelines.runtime.interrupt import keep_sigterm, sigterm_as_ctrl_c

    def rays(signum, frame):  # what ray.init installs
        raise SystemExit(signum)

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_ctrl_c():
        ours = signal.getsignal(signal.SIGTERM)
        with keep_sigterm():
            signal.signal(signal.SIGTERM, rays)
        assert signal.getsignal(signal.SIGTERM) is ours
    try:
        with keep_sigterm():
            signal.signal(signal.SIGTERM, rays)
        assert signal.getsignal(signal.SIGTERM) is rays
    finally:
        signal.signal(signal.SIGTERM, before)
