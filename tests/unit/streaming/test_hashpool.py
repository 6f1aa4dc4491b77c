"""Diff_ids hashed by worker threads: right values, largest first, errors passed on."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from vmbuild.errors import ImageError
from vmbuild.oci.inputs import fill
from vmbuild.oci.sinks import Cancelled
from vmbuild.oci.tarplan import Member, TarPlan
from vmbuild.streaming.hashpool import HashPool
from vmbuild.streaming.packing import diff_id_of_plan


def plan_of(path: Path, data: bytes) -> TarPlan:
    path.write_bytes(data)
    plan = TarPlan()
    plan.add(Member(b"h" * 512, str(path), len(data)))
    plan.finish()
    return plan


def expected(data: bytes, plan: TarPlan) -> str:
    body = b"h" * 512 + data + bytes(-len(data) % 512)
    return "sha256:" + hashlib.sha256(body + bytes(plan.size - len(body))).hexdigest()


def test_values_and_largest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[int] = []
    real = diff_id_of_plan
    gate = threading.Event()

    def recorded(plan: TarPlan, stop: threading.Event | None = None) -> str:
        gate.wait(10)
        order.append(plan.size)
        return real(plan, stop)

    monkeypatch.setattr("vmbuild.streaming.hashpool.diff_id_of_plan", recorded)
    blobs = {i: bytes([i]) * (i * 20000) for i in (1, 3, 2)}
    plans = {i: plan_of(tmp_path / str(i), data) for i, data in blobs.items()}
    with HashPool(workers=1) as pool:
        pool.submit(0, plan_of(tmp_path / "first", b"x"))  # taken at once by the worker
        for i, plan in plans.items():
            pool.submit(i, plan)
        gate.set()
        for i, plan in plans.items():
            assert pool.diff_id(i) == expected(blobs[i], plan)
    assert order[1:] == sorted(order[1:], reverse=True)


def test_the_caller_hashes_what_no_worker_started(tmp_path: Path) -> None:
    pool = HashPool(workers=1)
    pool.close()  # no worker left: the caller must do it
    plan = plan_of(tmp_path / "f", b"data")
    pool.submit(7, plan)
    assert pool.diff_id(7) == expected(b"data", plan)


def test_an_error_reaches_the_caller(tmp_path: Path) -> None:
    plan = plan_of(tmp_path / "f", b"data")
    (tmp_path / "f").write_bytes(b"longer data")
    with HashPool() as pool:
        pool.submit(1, plan)
        with pytest.raises(ImageError, match="changed while"):
            pool.diff_id(1)


def test_leaving_with_an_error_drops_what_waits(tmp_path: Path) -> None:
    plans = [plan_of(tmp_path / str(i), b"x" * 1000) for i in range(50)]
    with pytest.raises(RuntimeError), HashPool(workers=1) as pool:
        for i, plan in enumerate(plans):
            pool.submit(i, plan)
        raise RuntimeError
    assert all(not t.is_alive() for t in pool._threads)


def test_leaving_with_an_error_stops_a_long_hash(tmp_path: Path) -> None:
    big = plan_of(tmp_path / "big", b"\0" * (64 << 20))
    started = threading.Event()
    real_fill = fill

    def slow_fill(*args: object) -> None:
        started.set()
        real_fill(*args)  # type: ignore[arg-type]
        time.sleep(0.05)  # 64 chunks: 3 s unless hashing gives up

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("vmbuild.streaming.packing.fill", slow_fill)
        begun = time.monotonic()
        with pytest.raises(RuntimeError), HashPool(workers=1) as pool:
            pool.submit(1, big)
            assert started.wait(10)
            raise RuntimeError
        assert time.monotonic() - begun < 1.5
        with pytest.raises(Cancelled):
            pool.diff_id(1)
