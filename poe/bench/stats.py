"""Latency percentiles and throughput figures of a benchmark run.

What it is for: turning the latencies recorded during the measured window into the numbers
the report prints: nearest-rank percentiles (numpy's ``inverted_cdf`` method: the p-th
percentile of n sorted values is the ceil(p/100 * n)-th of them), so every reported value
was observed.

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
    ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    ranks = np.percentile(ms, PERCENTILES, method="inverted_cdf")    # nearest rank
    out = {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, ranks)}
    out["max"] = round(float(ms.max()), 3)
    out["mean"] = round(float(ms.mean()), 3)
    out["count"] = int(ms.size)
    return out


def decode_latencies(blobs: list[bytes]) -> np.ndarray:
    parts = [np.frombuffer(b, dtype=np.float64) for b in blobs if b]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
