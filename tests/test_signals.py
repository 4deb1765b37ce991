"""experiments/harness/signals.py: a first SIGINT/SIGTERM asks for a stop, a second stops at once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.harness import signals


@pytest.fixture
def caught() -> Iterator[None]:
    before = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    signals.install()
    yield
    signals.uninstall()
    signals.set_stop_file(None)
    assert {s: signal.getsignal(s) for s in signals.STOP_SIGNALS} == before


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_only_records_a_stop_request(caught: None, sig: int, status: int) -> None:
    assert signals.requested() is None
    os.kill(os.getpid(), sig)
    assert signals.requested() == sig.name
    assert signals.exit_status() == status


def test_second_signal_stops_at_once(caught: None) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert signals.requested() == "SIGTERM"  # the first one is what is reported


def test_stop_file_carries_a_request_to_other_processes(caught: None, tmp_path: Path) -> None:
    stop = tmp_path / ".launch" / "x" / signals.STOP_FILE
    signals.set_stop_file(stop)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.read_text().strip() == "SIGTERM"
    signals.reset()  # another process: no signal of its own, only the file
    assert signals.requested() == "SIGTERM"
    stop.unlink()
    assert signals.requested() is None
