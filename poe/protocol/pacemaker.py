"""Timers that follow the network (PROTOCOL.md §4.12, §4.7): shared by every protocol.

What it is for: the progress timeout (T_exec and T_req, after which a backup suspects the
primary) starts at the configured base, doubles after every view change that did not lead to
progress or that this replica's own progress timer started (its timeout was too short for
the network, or the primary was faulty: either way the next wait is longer, as PBFT's
view-change timer doubles), and halves again only after sustained progress that was fast:
a whole checkpoint interval in which no position took more than a quarter of the current
timeout from first sight to execution. With a synchronous but slow network (one-way delay
close to the base) the cluster makes a bounded number of view changes — until the timeout
is above the time a batch really takes — and then serves requests without suspecting anyone.

What it must never do: read a clock (times are passed in), shrink below the configured base
or grow beyond ``2^BACKOFF_MAX`` times it, or decay while progress is slow for it (that
would bring the view changes back, one period later).
"""
from __future__ import annotations

BACKOFF_MAX = 6          # the progress timeout grows to at most 64 x its base


class Pacemaker:
    """The progress timeout of one replica (see the module docstring)."""

    __slots__ = ("base_s", "exp", "_mark", "_slowest", "_fired")

    def __init__(self, base_s: float) -> None:
        assert base_s > 0
        self.base_s = base_s
        self.exp = 0                   # timeout = base * 2^exp
        self._mark = 0                 # executed sequence when the current view began
        self._slowest = 0.0            # slowest position since the last stable checkpoint
        self._fired = False            # our own progress timer fired in this view

    @property
    def timeout_s(self) -> float:
        return self.base_s * (1 << self.exp)

    def view_installed(self, executed: int) -> None:
        """A new view began with ``executed`` positions executed."""
        self._mark = executed
        self._slowest = 0.0
        self._fired = False

    def fired(self) -> None:
        """Our progress timer expired with work pending: we are about to suspect."""
        self._fired = True

    def leaving_view(self, executed: int) -> None:
        """We leave the current view. If nothing was executed in it, or our own timer made
        us leave, the timeout was too short for the network or the primary was faulty:
        either way the next view waits twice as long (once per view)."""
        if (executed <= self._mark or self._fired) and self.exp < BACKOFF_MAX:
            self.exp += 1
        self._fired = False

    def executed(self, latency_s: float) -> None:
        """A position executed ``latency_s`` after we first heard of it."""
        self._slowest = max(self._slowest, latency_s)

    def stable(self) -> None:
        """A stable checkpoint: sustained progress. Halve the timeout if every position of
        the interval took less than a quarter of it."""
        if self.exp > 0 and self._slowest < self.timeout_s / 4:
            self.exp -= 1
        self._slowest = 0.0
        assert 0 <= self.exp <= BACKOFF_MAX
