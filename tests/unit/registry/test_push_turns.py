"""registry/push: layers compress one at a time in the image's order (_Turns), and a
failed push stops the layers still waiting for their turn."""

from __future__ import annotations

import threading
import time

import pytest

from vmbuild.registry import blobs
from vmbuild.registry.push import _Turns


def test_turns_run_in_number_order_one_at_a_time() -> None:
    turns = _Turns(threading.Event())
    ran: list[int] = []
    inside = []

    def task(n: int) -> None:
        with turns.turn(n):
            inside.append(n)
            assert len(inside) == 1
            time.sleep(0.01)
            ran.append(n)
            inside.remove(n)

    threads = [threading.Thread(target=task, args=(n,)) for n in (3, 1, 2, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert ran == [0, 1, 2, 3]


def test_a_failed_turn_passes_on_and_stop_cancels_the_waiting() -> None:
    stop = threading.Event()
    turns = _Turns(stop)
    with pytest.raises(ValueError), turns.turn(0):
        raise ValueError("compressing failed")
    with turns.turn(1):  # the next one's turn came all the same
        pass
    stop.set()
    with pytest.raises(blobs.Cancelled), turns.turn(5):
        pass
