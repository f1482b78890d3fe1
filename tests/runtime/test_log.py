"""poe.runtime.log: the JSON-lines format that poe cluster, the system tests and tools parse
stays byte-for-byte what it was before the move onto the standard library's logging, a
call below the level costs no formatting, and a broken stream never raises."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest

from poe.runtime.log import JsonLinesFormatter, Log

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_a_line_is_compact_json_with_time_level_context_event_then_fields():
    out = io.StringIO()
    log = Log(out, context=lambda: {"replica": 2, "view": 0, "seq": 17})
    log.info("ready", endpoints=["tcp://127.0.0.1:7000"], load_s=0.25)
    log.warning("rolled-back", to=9)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert '"event":"ready"' in lines[0] and ", " not in lines[0] and ": " not in lines[0]
    first = json.loads(lines[0])
    assert list(first) == ["time", "level", "replica", "view", "seq", "event", "endpoints",
                           "load_s"]
    assert TIME.match(first["time"]), first["time"]
    assert (first["level"], first["event"], first["replica"], first["seq"]) == \
        ("info", "ready", 2, 17)
    assert json.loads(lines[1])["level"] == "warning"
    assert lines[1].endswith('"event":"rolled-back","to":9}')


def test_values_that_are_not_json_are_written_with_str():
    out = io.StringIO()
    Log(out).error("crashed", error=ValueError("boom"), where={1, 2} and frozenset([3]))
    line = json.loads(out.getvalue())
    assert line["error"] == "boom" and line["where"] == "frozenset({3})"
    assert list(line)[:3] == ["time", "level", "event"]          # no context: none written


def test_below_the_level_nothing_is_formatted_and_the_context_is_not_read():
    calls = []
    out = io.StringIO()
    log = Log(out, level="info", context=lambda: calls.append(1) or {"replica": 0})

    class Loud:
        def __str__(self):
            raise AssertionError("formatted below the level")

    log.debug("stable", checkpoint=64, state=Loud())
    assert out.getvalue() == "" and calls == [] and not log.enabled("debug")
    assert log.enabled("info") and log.enabled("error")
    log.info("status")
    assert calls == [1] and json.loads(out.getvalue())["event"] == "status"
    debug = io.StringIO()
    Log(debug, level="debug").debug("stable", checkpoint=64)
    assert json.loads(debug.getvalue())["level"] == "debug"


def test_levels_filter_and_an_unknown_level_is_one_clear_error():
    out = io.StringIO()
    log = Log(out, level="warning")
    log.info("status")
    log.error("bind-failed", detail="x")
    assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["bind-failed"]
    with pytest.raises(ValueError, match="log level 'verbose': must be one of debug, info"):
        Log(out, level="verbose")


def test_a_closed_stream_drops_the_line_silently_and_counts_it(capsys):
    out = io.StringIO()
    log = Log(out)
    out.close()
    log.info("exit", executed=5)                       # must not raise, nor print a traceback
    log.error("crashed")
    assert log.lost == 2
    assert capsys.readouterr().err == ""


def test_logs_are_private_and_other_records_use_the_same_format():
    a, b = io.StringIO(), io.StringIO()
    Log(a, context=lambda: {"replica": 0}).info("ready")
    Log(b, context=lambda: {"replica": 1}).info("ready")
    assert json.loads(a.getvalue())["replica"] == 0 and json.loads(b.getvalue())["replica"] == 1
    root = io.StringIO()
    handler = logging.StreamHandler(root)
    logging.getLogger().addHandler(handler)
    try:
        log = Log(a)
        log.info("status")
        assert root.getvalue() == ""                   # not propagated to the root logger
        extra = io.StringIO()
        other = logging.StreamHandler(extra)
        other.setFormatter(JsonLinesFormatter())
        log.logger.addHandler(other)                   # an operator's second destination
        log.info("peer-up", peer="r2")
        log.logger.warning("plain %s record", "stdlib")
        lines = [json.loads(x) for x in extra.getvalue().splitlines()]
        assert [x["event"] for x in lines] == ["peer-up", "plain stdlib record"]
        assert lines[0]["peer"] == "r2" and lines[1]["level"] == "warning"
    finally:
        logging.getLogger().removeHandler(handler)
