"""The access log's writer (issue 13 item 1): lines appended on the request path, written by a
thread of its own; a reader that stops reading (stderr piped to a stalled program) never stalls
a request: lines beyond the bound are dropped, counted, and said so once writing works again."""

from __future__ import annotations

import json
import os
import select
import threading
import time

from gateway.logs import AccessLog


def read_lines(fd: int, until: str, limit: int = 100_000, seconds: float = 20.0) -> list[str]:
    """Lines from ``fd`` until one containing ``until`` (bounded in count and time: a line
    that never comes fails the test instead of hanging it)."""
    buffered = b""
    lines: list[str] = []
    deadline = time.monotonic() + seconds
    for _ in range(limit):
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffered += chunk
        *complete, buffered = buffered.split(b"\n")
        lines.extend(line.decode() for line in complete)
        if any(until in line for line in lines):
            break
    return lines


def test_lines_arrive_whole_and_in_order() -> None:
    reader, writer = os.pipe()
    sink = AccessLog(writer, interval=0.01)
    try:
        for n in range(500):
            sink.emit(json.dumps({"n": n, "pad": "x" * 50}).encode() + b"\n")
        sink.emit(b'{"n": "end"}\n')
        lines = read_lines(reader, '"end"')
    finally:
        sink.close()
        os.close(reader)
        os.close(writer)
    assert [json.loads(line)["n"] for line in lines] == [*range(500), "end"]


def test_a_stalled_reader_never_blocks_and_drops_are_reported() -> None:
    reader, writer = os.pipe()  # nobody reads for now: the pipe fills at 64 KiB
    sink = AccessLog(writer, max_pending=100, interval=0.01)
    line = json.dumps({"pad": "x" * 500}).encode() + b"\n"
    done = threading.Event()

    def requests() -> None:  # the event loop's side: emit must return at once, always
        for _ in range(5000):
            sink.emit(line)
        done.set()

    emitter = threading.Thread(target=requests)
    emitter.start()
    emitter.join(30)
    try:
        assert done.is_set(), "emit blocked behind a stalled reader"
        assert sink.dropped > 0
        lines = read_lines(reader, "access log lines dropped")  # the reader comes back
        reports = [line for line in lines if "access log lines dropped" in line]
        assert reports, "no report of the dropped lines"
        report = json.loads(reports[0])
        assert report["level"] == "WARNING"
        assert report["msg"].endswith("access log lines dropped: the log's reader did not keep up")
        assert int(report["msg"].split()[0]) > 0
    finally:
        sink.close(timeout=0.5)
        os.close(reader)
        os.close(writer)
