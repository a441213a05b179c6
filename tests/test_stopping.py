"""Stopping on a signal: the handlers only record; the goodbye says what was kept."""

import os
import signal
import threading
import time

import pytest

from funcbp.stopping import Stop, supervise


def test_a_signal_is_recorded_not_raised_and_the_old_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    stop = Stop()
    restore = stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested == signal.SIGTERM
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_goodbye_says_what_was_kept_and_how_to_resume(tmp_path):
    stop = Stop()
    stop.signals.append(signal.SIGINT)
    assert stop.goodbye() == "stopped by SIGINT; nothing was written"
    stop.started_from(tmp_path, 40)
    assert stop.goodbye("at iteration 40") == (
        f"stopped by SIGINT at iteration 40; the checkpoint of iteration 40 in {tmp_path} is as "
        f"it was; resume with funcbp train --resume {tmp_path}"
    )
    stop.saved(tmp_path, 60)
    assert f"; kept the checkpoint of iteration 60 in {tmp_path};" in stop.goodbye()


def test_a_command_of_its_own_is_named_even_before_the_first_checkpoint(tmp_path):
    stop = Stop(resume_command=f"funcbp experiment --resume {tmp_path}")
    stop.signals.append(signal.SIGTERM)
    assert stop.goodbye() == (
        f"stopped by SIGTERM; nothing was trained yet; resume with funcbp experiment --resume "
        f"{tmp_path}"
    )
    stop.saved(tmp_path / "train", 20)
    assert stop.goodbye().endswith(
        f"in {tmp_path / 'train'}; resume with funcbp experiment --resume {tmp_path}"
    )


def test_the_worker_thread_gives_back_its_result_or_its_exception():
    assert supervise(lambda: 7, Stop(), prefix="funcbp x") == 7

    def fail():
        raise ValueError("bad value")

    with pytest.raises(ValueError, match="bad value"):
        supervise(fail, Stop(), prefix="funcbp x")


def test_a_stoppable_worker_gets_to_stop_by_itself():
    stop = Stop()
    restore = stop.install()
    started = threading.Event()

    def work():
        stop.stoppable = True
        started.set()
        while stop.requested is None:
            time.sleep(0.01)
        return "stopped myself"

    def send():
        started.wait()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=send).start()
    try:
        assert supervise(work, stop, prefix="funcbp x") == "stopped myself"
    finally:
        restore()


def test_after_a_signal_the_handlers_stay_and_later_signals_are_only_recorded():
    before = signal.getsignal(signal.SIGINT)
    stop = Stop()
    restore = stop.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        stop.uninstall(restore)  # a signal came: the handlers stay
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt
        time.sleep(0.01)
        assert stop.signals == [signal.SIGTERM, signal.SIGINT]
        assert stop.requested == signal.SIGTERM  # the first decides
    finally:
        restore()
    assert signal.getsignal(signal.SIGINT) is before
    quiet = Stop()
    quiet.uninstall(quiet.install())  # no signal: restored at once
    assert signal.getsignal(signal.SIGINT) is before


def test_a_command_without_checkpoints_says_only_which_signal_stopped_it():
    stop = Stop(checkpoints=False)
    stop.signals.append(signal.SIGHUP)
    assert stop.goodbye() == "stopped by SIGHUP"
