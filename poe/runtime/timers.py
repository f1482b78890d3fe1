"""Timers of protocol objects: a heap with generations, driven by the event loop.

What it is for: ``SetTimer(kind, key, at)`` arms (or re-arms: the new time replaces the old)
the timer ``(owner, kind, key)``; ``CancelTimer`` disarms it; ``pop_due(now)`` returns the
timers whose time has come, in time order, each at most once per arming. Stale heap entries
(re-armed or cancelled timers) are skipped by their generation and the heap is rebuilt when
they outnumber the live timers, so memory stays proportional to the armed timers.

Must never: fire a cancelled or superseded timer, fire one timer twice for one arming, or
read the clock (the caller passes ``now``).
"""
from __future__ import annotations

import heapq
from collections.abc import Hashable


class Timers:
    __slots__ = ("_gen", "_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, int] = {}
        self._gen = 0

    def __len__(self) -> int:
        return len(self._live)

    def set(self, ident: Hashable, at: float) -> None:
        self._gen += 1
        self._live[ident] = self._gen
        heapq.heappush(self._heap, (at, self._gen, ident))
        if len(self._heap) > 4 * len(self._live) + 1024:
            self._compact()

    def cancel(self, ident: Hashable) -> None:
        self._live.pop(ident, None)

    def next_at(self) -> float | None:
        heap, live = self._heap, self._live
        while heap:
            at, gen, ident = heap[0]
            if live.get(ident) == gen:
                return at
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        heap, live = self._heap, self._live
        due = []
        while heap and heap[0][0] <= now:
            _, gen, ident = heapq.heappop(heap)
            if live.get(ident) == gen:
                del live[ident]
                due.append(ident)
        return due

    def _compact(self) -> None:
        live = self._live
        self._heap = [entry for entry in self._heap if live.get(entry[2]) == entry[1]]
        heapq.heapify(self._heap)
