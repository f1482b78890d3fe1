"""docs/grafana-dashboard.json: every metric a panel or a variable queries is one a replica
exports (scraped from a running Metrics endpoint over a real replica object), so a renamed
series breaks this test instead of a dashboard nobody looks at until an incident."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from urllib.request import urlopen

from prometheus_client.parser import text_string_to_metric_families
from test_metrics import _replica, _runtime

from poe.runtime.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
# what each panel the issue asks for must show (issue 16)
REQUIRED = {
    "poe_requests_executed_total",          # throughput
    "poe_view",
    "poe_executed_seq",
    "poe_peer_up",                          # peer connectivity
    "poe_loop_turn_seconds_bucket",         # loop-turn duration
    "poe_batch_latency_seconds_bucket",     # request latency
    "poe_messages_dropped_total",           # drops by reason
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
}
_OPERATORS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not a function or
    aggregation (followed by "("), a keyword, a label (inside {...} or by/without (...)), a
    range ([...]) or inside a string."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group().lower() in _OPERATORS:
            continue
        names.add(m.group())
    return names


def _panels(node) -> list[dict]:
    out = []
    for p in node.get("panels", []):
        out.append(p)
        out.extend(_panels(p))                  # rows may hold panels
    return out


def _exported() -> dict[str, set[str]]:
    """Sample name -> its label names, as a running endpoint serves them."""
    r = _replica(1)
    r.on_message(b"no frame at all", 0.0)       # a drop, so the drops family has a sample
    metrics = Metrics(_runtime(r, Counter({"oversized": 1})), "127.0.0.1", 0)
    try:
        port = metrics.server.server_port
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        metrics.close()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_the_name_extraction_finds_what_a_query_selects():
    expr = ('histogram_quantile(0.99, sum by (replica, le) (rate(x_bucket{a="b",c=~"$v"}'
            '[$__rate_interval]))) / on(replica) y_total > 1e-3 and bool z offset 5m')
    assert metric_names(expr) == {"x_bucket", "y_total", "z"}
    assert metric_names('poe_view{replica=~"$replica"}') == {"poe_view"}
    assert metric_names("sum(rate(poe_nonexistent_total[1m]))") == {"poe_nonexistent_total"}


def test_every_metric_the_dashboard_queries_is_exported():
    board = json.loads(DASHBOARD.read_text())
    exported = _exported()
    panels = _panels(board)
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    used: set[str] = set()
    for panel in panels:
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        assert targets, f"panel {panel['title']!r} queries nothing"
        for target in targets:
            names = metric_names(target["expr"])
            assert names, (panel["title"], target["expr"])
            unknown = names - set(exported)
            assert not unknown, f"panel {panel['title']!r} queries {sorted(unknown)}"
            # the dashboard's $replica filter applies to every series it shows
            assert all("replica" in exported[n] for n in names), (panel["title"], names)
            used |= names
    assert REQUIRED <= used, sorted(REQUIRED - used)
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        for metric, label in re.findall(r"label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)", query):
            assert label in exported.get(metric, ()), (variable["name"], query)
