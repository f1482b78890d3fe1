"""Paired old-vs-new benchmarks: the old side timed in the setup of each round, just before
the new one, so load from other processes hits both alike."""
from __future__ import annotations

import statistics


def report_paired(benchmark, old_times: list[float], old_label: str, new_label: str) -> None:
    """Record the medians of both sides and of the per-round ratios old / new in
    ``extra_info`` (``paired_ratio_median``) and print them; nothing under
    --benchmark-disable (CI: one run, no timings)."""
    if benchmark.stats is None:
        return
    new_times = benchmark.stats.stats.data
    ratios = [o / n for o, n in zip(old_times, new_times)]
    info = benchmark.extra_info
    info["old_median_us"] = round(statistics.median(old_times) * 1e6, 1)
    info["new_median_us"] = round(statistics.median(new_times) * 1e6, 1)
    info["paired_ratio_median"] = round(statistics.median(ratios), 2)
    print(f"\n{old_label} {info['old_median_us']} us, {new_label} {info['new_median_us']} us, "
          f"per-round ratio median {info['paired_ratio_median']}x")
