"""Structured log lines: one JSON object per line, on stderr or a file.

What it is for: every line carries the time, the level, the event name and the process's
context (a replica adds its id, view and executed sequence number), so a run can be read by
a person and parsed by a test or a script.

Must never: log a secret key or a key object (callers pass plain numbers and strings), or
raise because a value is not JSON (it is written with ``str``).
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Log:
    def __init__(self, stream: TextIO | None = None, level: str = "info",
                 context: Callable[[], dict] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.threshold = LEVELS[level]
        self.context = context

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold

    def emit(self, level: str, event: str, **fields) -> None:
        if LEVELS[level] < self.threshold:
            return
        now = time.time()
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                  + f".{int(now % 1 * 1000):03d}Z", "level": level}
        if self.context is not None:
            record.update(self.context())
        record["event"] = event
        record.update(fields)
        try:
            self.stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass                     # a closed or full log stream must not stop a replica

    def debug(self, event: str, **fields) -> None:
        self.emit("debug", event, **fields)

    def info(self, event: str, **fields) -> None:
        self.emit("info", event, **fields)

    def warning(self, event: str, **fields) -> None:
        self.emit("warning", event, **fields)

    def error(self, event: str, **fields) -> None:
        self.emit("error", event, **fields)
