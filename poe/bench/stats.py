"""Latency percentiles and throughput figures of a benchmark run.

What it is for: turning the latencies recorded during the measured window into the numbers
the report prints (nearest-rank percentiles, so every reported value was observed).

Must never: interpolate a latency nobody observed, or report a percentile of nothing as a
number (an empty sample gives None).
"""
from __future__ import annotations

import numpy as np

PERCENTILES = (50, 95, 99)


def latency_summary(latencies_s: np.ndarray) -> dict:
    """p50/p95/p99/max/mean in milliseconds (None for an empty sample)."""
    if latencies_s.size == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None, "count": 0}
    ms = np.sort(latencies_s) * 1000.0
    out = {}
    for p in PERCENTILES:
        rank = int(np.ceil(p / 100 * ms.size)) - 1        # nearest rank
        out[f"p{p}"] = round(float(ms[max(rank, 0)]), 3)
    out["max"] = round(float(ms[-1]), 3)
    out["mean"] = round(float(ms.mean()), 3)
    out["count"] = int(ms.size)
    return out


def decode_latencies(blobs: list[bytes]) -> np.ndarray:
    parts = [np.frombuffer(b, dtype=np.float64) for b in blobs if b]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
