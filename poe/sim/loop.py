"""A discrete-event loop on a virtual clock.

Events are (time, sequence, function, argument) tuples in a heap; ties break by insertion
order, so a run depends only on its inputs and seed. Must never: read the wall clock.
"""
from __future__ import annotations

import heapq
from collections.abc import Callable


class EventLoop:
    __slots__ = ("now", "_heap", "_seq", "events")

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list = []
        self._seq = 0
        self.events = 0

    def at(self, time: float, fn: Callable, arg=None) -> None:
        """Run ``fn(arg)`` at virtual time ``time`` (never before now)."""
        self._seq += 1
        heapq.heappush(self._heap, (time if time > self.now else self.now, self._seq, fn, arg))

    def run(self, until: float, stop: Callable[[], bool] | None = None,
            max_events: int | None = None) -> None:
        """Process events up to virtual time ``until``, or until ``stop()`` is true."""
        heap = self._heap
        pop = heapq.heappop
        budget = max_events if max_events is not None else -1
        while heap and heap[0][0] <= until:
            time, _, fn, arg = pop(heap)
            self.now = time
            fn(arg)
            self.events += 1
            if budget > 0:
                budget -= 1
                if budget == 0:
                    return
            if stop is not None and stop():
                return
        if not heap or heap[0][0] > until:
            self.now = max(self.now, until) if not heap else self.now

    def pending(self) -> int:
        return len(self._heap)
