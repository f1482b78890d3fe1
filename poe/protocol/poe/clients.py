"""Per-client bookkeeping of a replica: the bounded reply cache (exactly-once answers to
retries) and the primary's set of pending client messages (PROTOCOL.md §2.5, §10 row 7).

A client message is identified by (client id, its first request id): ids strictly increase
per client, so the pair names one message. Must never: grow without bound (both tables are
FIFO-bounded by configuration), or hash with anything an adversary could collide (plain
tuples of ints, compared exactly).
"""
from __future__ import annotations


class ReplyCache:
    """(client, first t) -> (view, seq, sealed INFORM frame), oldest evicted first."""

    __slots__ = ("size", "_entries", "evicted")

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[tuple[int, int], tuple[int, int, bytes]] = {}
        self.evicted = 0

    def get(self, key: tuple[int, int]) -> tuple[int, int, bytes] | None:
        return self._entries.get(key)

    def put(self, key: tuple[int, int], view: int, seq: int, frame: bytes) -> None:
        entries = self._entries
        if key in entries:
            del entries[key]
        entries[key] = (view, seq, frame)
        if len(entries) > self.size:
            del entries[next(iter(entries))]
            self.evicted += 1

    def drop_above(self, seq: int) -> None:
        """Forget replies for batches above ``seq`` (they were rolled back)."""
        for key in [k for k, v in self._entries.items() if v[1] > seq]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class PendingSet:
    """Client messages the primary has queued or proposed but not yet executed."""

    __slots__ = ("limit", "_keys")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._keys: set[tuple[int, int]] = set()

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._keys

    def full(self) -> bool:
        return len(self._keys) >= self.limit

    def add(self, key: tuple[int, int]) -> None:
        self._keys.add(key)

    def discard(self, key: tuple[int, int]) -> None:
        self._keys.discard(key)

    def clear(self) -> None:
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._keys)
