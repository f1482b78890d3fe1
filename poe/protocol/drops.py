"""Drop counters per reason, and per authenticated sender (PROTOCOL.md §4.13: every drop
counted; issue 14: per sender where known).

What it is for: ``DropCounter`` is the ``drops`` Counter of a replica. While a frame whose
MAC verified is being handled, the replica sets ``sender``; every drop counted meanwhile is
also counted in ``by_sender[(sender, reason)]``. Frames whose sender is not authenticated
(malformed, unknown sender, wrong or bad MAC, signature kinds before their check) count
only by reason: an unauthenticated frame is never evidence against anyone, not even in a
metric an operator reads.

``unauthenticated`` counts the drops of frames no correct party ever sends (reasons in
``UNAUTHENTICATED``, counted while no sender is authenticated): the runtime compares it
before and after handing a frame over and quarantines the connection it came in on
(poe/transport/zmq.py, issue 14).

What it must never do: grow with hostile input (``by_sender`` holds at most n x reasons
entries, reasons being names in the code) or slow the normal case (only drops pay).
"""
from __future__ import annotations

from collections import Counter


class DropCounter(Counter):
    """A Counter of drop reasons that also counts by authenticated sender."""

    # a frame a correct replica or client never sends: it does not decode, names no peer
    # (or the receiver), lacks its kind's authentication, carries a bad MAC, is of a kind
    # never sent to a replica, is a client message whose signature does not verify (a
    # correct backup forwards only messages it verified) or a VC-REQUEST whose does not
    UNAUTHENTICATED = frozenset(("malformed", "unknown-sender", "wrong-auth", "bad-mac",
                                 "unexpected-kind", "bad-client-signature",
                                 "vc-request-bad-signature"))

    def __init__(self, *args, **kwargs) -> None:
        self.sender = -1                            # the authenticated sender, or -1
        self.unauthenticated = 0                    # drops of UNAUTHENTICATED reasons
        self.by_sender: Counter[tuple[int, str]] = Counter()
        super().__init__(*args, **kwargs)

    def __setitem__(self, reason, value) -> None:
        if self.sender >= 0:
            delta = value - self.get(reason, 0)
            if delta > 0:
                self.by_sender[(self.sender, reason)] += delta
        elif reason in self.UNAUTHENTICATED:
            self.unauthenticated += 1
        super().__setitem__(reason, value)

    def __reduce__(self):
        return (Counter, (dict(self),))
