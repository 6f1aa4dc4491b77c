"""A mirror on 127.0.0.1 that serves a directory, its ``.deb`` files (or others) as a
test asks: whole, dripped a few bytes a second, as an endless body, cut short, held
half-way until the test lets them go on, or not answered at all."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO


@dataclass
class Behaviour:
    """How the files named ``*suffix`` are served: ``mode`` is "whole", "drip"
    (``rate`` bytes a second), "endless" (junk without end), "short" (half, then the
    connection closes), "gate" (half, then the rest once ``go`` is set) or "stall" (no
    answer until ``go``). ``sent`` counts body bytes written; ``started`` is set when
    one begins."""

    mode: str = "whole"
    rate: float = 5.0
    suffix: str = ".deb"  # the files served so (".gz": the index)
    go: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    closing: threading.Event = field(default_factory=threading.Event)  # the server stops
    sent: int = 0


class _Handler(SimpleHTTPRequestHandler):
    behaviour: Behaviour

    def log_message(self, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        b = self.behaviour
        if not self.path.endswith(b.suffix) or b.mode == "whole":
            return super().copyfile(source, outputfile)
        b.started.set()
        data = source.read()
        try:
            if b.mode == "drip":
                for i in range(len(data)):
                    self._out(outputfile, data[i : i + 1])
                    if b.closing.wait(1 / b.rate):
                        break
            elif b.mode == "endless":
                while not b.closing.is_set():
                    self._out(outputfile, b"x" * 65536)
            elif b.mode == "short":
                self._out(outputfile, data[: len(data) // 2])
                self.close_connection = True
            elif b.mode == "gate":
                self._out(outputfile, data[: len(data) // 2])
                b.go.wait(30)
                self._out(outputfile, data[len(data) // 2 :])
        except OSError:
            self.close_connection = True  # the client went away

    def send_head(self) -> Any:
        b = self.behaviour
        if self.path.endswith(b.suffix) and b.mode == "stall":  # no answer at all
            b.started.set()
            b.go.wait(30)
            self.close_connection = True
            return None
        if not (self.path.endswith(self.behaviour.suffix) and self.behaviour.mode == "endless"):
            return super().send_head()
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return None
        self.send_response(200)  # no Content-Length: the body ends when the server closes
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        return path.open("rb")

    def _out(self, out: BinaryIO, data: bytes) -> None:
        out.write(data)
        out.flush()
        self.behaviour.sent += len(data)


@contextmanager
def serve(root: Path, behaviour: Behaviour) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 as ``behaviour`` says; yields the base URL."""
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    server.daemon_threads = False  # (server_close waits for every answer: no thread left)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        behaviour.closing.set()
        behaviour.go.set()
        server.shutdown()
        server.server_close()
        thread.join()
