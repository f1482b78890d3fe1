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


RETRIES_BEFORE_SUSPECT = 3   # authenticated retries of an answered message (over a timeout)


class RequestWatch:
    """The suspicion rules about client requests (PROTOCOL.md §4.2, §4.12), shared by every
    protocol: T_req on messages a backup forwarded to the primary, and "client unserved".

    T_req: a forwarded message is waited for until it executes, or until ``share`` other
    messages of its client executed after the forward (that client had more than its share
    of the primary's queue, which a correct primary may drop, §4.13; a correct client keeps
    fewer outstanding, and its retries are forwarded afresh).

    Client unserved: a retry of a message executed and answered in the current view counts
    only if it is authenticated for us and numbered above the last counted (the caller
    checks the MAC; ``retry`` the number); ``RETRIES_BEFORE_SUSPECT`` of them over a timeout
    make it due, once per view. The caller suspects only if another replica asked to leave
    the view (``unserved``): while all stay, nf correct replicas answer every client.

    Must never: grow beyond ``limit`` entries per table, or wait for a message it was told
    executed."""

    __slots__ = ("share", "limit", "forwarded", "_served", "_retries", "_unserved_view")

    def __init__(self, share: int, limit: int) -> None:
        self.share = share
        self.limit = limit
        self.forwarded: dict[tuple[int, int], tuple[float, int]] = {}  # key -> (when, served)
        self._served: dict[int, int] = {}       # client -> messages executed while waiting
        self._retries: dict[tuple[int, int], tuple[float, int, int]] = {}
        self._unserved_view = -1

    def forward(self, key: tuple[int, int], now: float) -> None:
        """We forwarded message ``key`` to the primary: wait for it (T_req)."""
        forwarded = self.forwarded
        if key not in forwarded and len(forwarded) < self.limit:
            forwarded[key] = (now, self._served.get(key[0], 0))

    def executed(self, key: tuple[int, int]) -> None:
        """Message ``key`` executed (call only while ``forwarded`` is not empty)."""
        self.forwarded.pop(key, None)
        served = self._served
        served[key[0]] = served.get(key[0], 0) + 1

    def expired(self, now: float, timeout_s: float) -> int:
        """Forget what is no longer waited for; -1 if a message waited ``timeout_s``, else
        how many stopped being waited for (over their client's share)."""
        forwarded = self.forwarded
        if not forwarded:
            self._served.clear()
            return 0
        served, share = self._served, self.share
        expired, released = False, 0
        for key, (t, base) in list(forwarded.items()):
            if served.get(key[0], 0) - base >= share:
                del forwarded[key]
                released += 1
            elif now - t >= timeout_s:
                expired = True
        return -1 if expired else released

    def retry(self, key: tuple[int, int], attempt: int, now: float, timeout_s: float,
              view: int) -> str:
        """An authenticated retry numbered ``attempt`` of answered message ``key``:
        "replayed" (number already counted), "counted", or "due" (suspect if another
        replica asked to leave ``view``, then call ``unserved``)."""
        first, retries, last = self._retries.get(key, (now, 0, 0))
        if attempt <= last:
            return "replayed"
        if len(self._retries) >= self.limit:
            self._retries.clear()
        retries += 1
        self._retries[key] = (first, retries, attempt)
        if retries < RETRIES_BEFORE_SUSPECT or now - first < timeout_s \
                or self._unserved_view == view:
            return "counted"
        return "due"

    def unserved(self, view: int) -> None:
        """We suspect the primary of ``view`` for an unserved client (once per view)."""
        self._unserved_view = view

    def new_view(self) -> None:
        """A new view gets its own chance to serve every client."""
        self.forwarded.clear()
        self._retries.clear()
