"""Structured log lines: one JSON object per line, on stderr or a file, through the standard
library's ``logging``.

What it is for: every line carries the time, the level, the event name and the process's
context (a replica adds its id, view and executed sequence number), so a run can be read by
a person and parsed by a test or a script. ``Log`` is the thin front the runtime calls
(``log.info("ready", endpoints=...)``); underneath, each ``Log`` owns a ``logging.Logger``
with one handler writing through ``JsonLinesFormatter``. An operator who wants the lines
elsewhere too (syslog, a rotating file) adds a handler to ``log.logger`` with that
formatter; a root logging configuration neither duplicates nor swallows them (the logger is
not in the global hierarchy: several replicas in one process, as in tests, keep their own
streams).

The line format is fixed (``poe cluster``, the system tests and tools parse it): compact
JSON, keys in this order: ``time`` (UTC, milliseconds, ``...Z``), ``level`` (``debug``,
``info``, ``warning``, ``error``), the context, ``event``, then the call's fields.

Cost: a call below the level returns after one cached level test; nothing is formatted. The
context is read when the line is made, on the calling thread.

Must never: log a secret key or a key object (callers pass plain numbers and strings), or
raise because a value is not JSON (it is written with ``str``), or stop a replica because
the log stream is closed or full (the line is dropped and counted in ``Log.lost``).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
_NAMES = {v: k for k, v in LEVELS.items()}
_FIELDS = "poe_fields"        # LogRecord attributes carrying the event's fields and context
_CONTEXT = "poe_context"


class JsonLinesFormatter(logging.Formatter):
    """One compact JSON object per record: time, level, context, event, fields. A record
    that did not come through ``Log`` (a plain ``logger.info("text %s", x)``) is written
    with its message as the event."""

    def format(self, record: logging.LogRecord) -> str:
        now = record.created
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                + f".{int(now % 1 * 1000):03d}Z",
                "level": _NAMES.get(record.levelno, record.levelname.lower())}
        context = getattr(record, _CONTEXT, None)
        if context:
            line.update(context)
        fields = getattr(record, _FIELDS, None)
        line["event"] = record.msg if fields is not None else record.getMessage()
        if fields:
            line.update(fields)
        if record.exc_info and fields is None:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class _StreamHandler(logging.StreamHandler):
    """A StreamHandler that counts a line it could not write instead of printing a
    traceback to stderr (which may be the very stream that failed)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.lost = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self.lost += 1


class Log:
    def __init__(self, stream: TextIO | None = None, level: str = "info",
                 context: Callable[[], dict] | None = None, name: str = "poe") -> None:
        if level not in LEVELS:
            raise ValueError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
        self.stream = stream if stream is not None else sys.stderr
        self.context = context
        # constructed, not logging.getLogger(name): a logger of its own, outside the global
        # hierarchy (see the module's docstring); getLogger would hand two Logs of one
        # process the same logger, and each line to both streams
        self.logger = logging.Logger(name, LEVELS[level])  # noqa: LOG001
        self.logger.propagate = False
        self.handler = _StreamHandler(self.stream)
        self.handler.setFormatter(JsonLinesFormatter())
        self.logger.addHandler(self.handler)

    @property
    def lost(self) -> int:
        """Lines that could not be written (closed or full stream)."""
        return self.handler.lost

    def enabled(self, level: str) -> bool:
        return self.logger.isEnabledFor(LEVELS[level])

    def emit(self, level: str, event: str, **fields) -> None:
        self._log(LEVELS[level], event, fields)

    def _log(self, levelno: int, event: str, fields: dict) -> None:
        logger = self.logger
        if not logger.isEnabledFor(levelno):
            return
        extra = {_FIELDS: fields,
                 _CONTEXT: self.context() if self.context is not None else None}
        logger.handle(logger.makeRecord(logger.name, levelno, "poe", 0, event, (), None,
                                        extra=extra))

    def debug(self, event: str, **fields) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields) -> None:
        self._log(logging.ERROR, event, fields)
