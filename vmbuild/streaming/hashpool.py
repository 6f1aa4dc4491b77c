"""Layer diff_ids hashed by worker threads, beside and ahead of the writing.

SHA-256 runs at about the pace a pipe carries bytes, so a stream that hashes each
layer as it writes it goes at the hash's pace. Instead a new layer's plan is handed to
this pool once it is planned; workers take the largest waiting layer first (the longest
hash starts earliest) and read its files themselves, a second read, from the page cache.
Reads and hashlib release the GIL, so the workers run beside the writer on other cores.

Both passes use one plan, so they agree on every header and size; a file whose content
changes between them without its metadata changing is the one case a later ``lstat``
check cannot see, as for a diff_id remembered by :mod:`vmbuild.streaming.idcache`.
"""

from __future__ import annotations

import heapq
import os
import threading

from vmbuild.oci.tarplan import TarPlan
from vmbuild.streaming.packing import diff_id_of_plan

MAX_WORKERS = 4


class _Task:
    def __init__(self, plan: TarPlan):
        self.plan: TarPlan | None = plan
        self.started = False
        self.value = ""
        self.error: BaseException | None = None
        self.done = threading.Event()


class HashPool:
    """Use as a context manager; on leaving with an error, waiting hashes are dropped."""

    def __init__(self, workers: int | None = None):
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, _Task]] = []
        self._tasks: dict[int, _Task] = {}
        self._closed = False
        self._stop = threading.Event()  # set when leaving with an error: hashes give up
        count = workers or max(1, min(MAX_WORKERS, os.cpu_count() or 1))
        self._threads = [
            threading.Thread(target=self._work, name=f"vmbuild-hash-{i}", daemon=True)
            for i in range(count)
        ]
        for t in self._threads:
            t.start()

    def submit(self, key: int, plan: TarPlan) -> None:
        """Hash ``plan``'s tar, to be asked for as ``key``."""
        task = _Task(plan)
        with self._cond:
            self._tasks[key] = task
            heapq.heappush(self._heap, (-plan.size, key, task))
            self._cond.notify()

    def diff_id(self, key: int) -> str:
        """The diff_id of ``key``'s tar: hashed here if no worker has started it yet,
        else waited for. Raises what hashing it raised."""
        task = self._tasks[key]
        with self._cond:
            claim = not task.started
            task.started = True
        if claim:
            self._run(task)
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.value

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if not self._heap:
                    return
                _size, _key, task = heapq.heappop(self._heap)
                if task.started:
                    continue
                task.started = True
            self._run(task)

    def _run(self, task: _Task) -> None:
        try:
            assert task.plan is not None
            task.value = diff_id_of_plan(task.plan, self._stop)
        except BaseException as exc:  # raised by diff_id() in the caller's thread
            task.error = exc
        finally:
            task.plan = None  # its headers are not needed any more
            task.done.set()

    def close(self, drop: bool = False) -> None:
        """Stop the workers once the queue is empty, or at once with ``drop`` (a hash
        under way gives up at its next chunk)."""
        with self._cond:
            self._closed = True
            if drop:
                self._heap.clear()
                self._stop.set()
            self._cond.notify_all()
        for t in self._threads:
            t.join()

    def __enter__(self) -> HashPool:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        self.close(drop=exc is not None)
