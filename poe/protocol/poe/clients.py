"""Per-client bookkeeping of a replica: the bounded reply cache (exactly-once answers to
retries), the primary's set of pending client messages (PROTOCOL.md §2.5, §10 row 7), and
the check of a batch's client signatures.

A client message is identified by (client id, its first request id): ids strictly increase
per client, so the pair names one message. Must never: grow without bound (both tables are
FIFO-bounded by configuration), or hash with anything an adversary could collide (plain
tuples of ints, compared exactly).
"""
from __future__ import annotations

from poe.crypto.statements import request_statement

# answers kept per client: its 64 newest messages (a client sends none 64 or more messages
# after its oldest undecided one, PoEClient's ANSWER_WINDOW; nor one with an id kv.WINDOW or
# more above that one's first id: the kv's exactly-once window, below which ids are STALE)
PER_CLIENT_REPLIES = 64
# entry bytes per INFORM frame: one client's entries of a batch are split over several frames
# above it (a batch of 4,096 requests of 4 KiB results would pass the codec's 16 MiB body)
INFORM_FRAME_BUDGET = 1 << 20
OTHER_ANSWERS_MAX = 1024     # answers of messages that reused an answered id, at most


def inform_frames(entries: list) -> list[list]:
    """One client's (key, entry piece, signature) of a batch, in batch order, split into the
    entries of its INFORM frames: a new frame when the entries would pass
    INFORM_FRAME_BUDGET bytes (one message's entry travels alone however large: at most
    256 x 4,107 B, far below the body limit), or when a message key repeats (a faulty
    primary's batch may hold two messages under one first request id, and a client drops a
    frame naming a message twice as one no correct replica sends, §2.4)."""
    frames: list[list] = []
    current: list = []
    keys: set = set()
    size = 0
    for entry in entries:
        key, piece = entry[0], entry[1]
        if current and (key in keys or size + len(piece) > INFORM_FRAME_BUDGET):
            frames.append(current)
            current, keys, size = [], set(), 0
        current.append(entry)
        keys.add(key)
        size += len(piece)
    if current:
        frames.append(current)
    return frames


def first_bad_client_signature(verify, batch, party) -> int:
    """Index of the first client message of ``batch`` whose Ed25519 signature does not
    verify (``verify(party(client id), statement, signature)``), or -1 if all do."""
    for i in range(len(batch)):
        if not verify(party(batch.client(i)), request_statement(batch.signed_part(i)),
                      batch.signature(i)):
            return i
    return -1


class ReplyCache:
    """(client, first t) -> (view, seq, sealed INFORM frame covering that message, the
    client's signature of that message or None if unknown).

    The signature binds the answer to the message's content (issue 16): two processes
    acting as one client id (on two hosts, where no lease sees both) may send different
    messages under one request id. A message that reuses an answered id is not the one
    answered: it gets its own (DUPLICATE) results, never the other one's answer, which
    would tell its sender that its write was executed (``same_message``).

    The frame is the one INFORM the replica sent the client for that batch: it carries an
    entry for each of the client's messages in the batch, and all of them map to the same
    bytes object (no copy). A retry of one message is answered with it; the client counts
    the entries of messages it no longer waits for as late (PROTOCOL.md §2.4, §2.8).

    Bounded per client (its 64 newest messages, the kv's exactly-once window) and in total
    (``size``): when over, the oldest entry of the client holding the most entries goes
    first, so a client that floods evicts its own answers, and every client keeps its newest
    answers as long as ``size`` exceeds the messages clients have outstanding. A retry of an
    executed message whose answer is gone can never be answered again (the kv returns
    DUPLICATE for it): size the cache above clients x outstanding messages.

    "Newest" and "oldest" are by request id, not by when an answer was written: a client's
    entries are kept in increasing id order (a re-written answer -- FINAL, a new view, a
    restart -- keeps its place; one executed out of order is put in its place), so its
    oldest message goes first. A client keeps every message it still waits for within its
    64 newest (PoEClient's ANSWER_WINDOW): their answers stay here. Evicting by write order
    instead let a refreshed older answer outlive a newer one still awaited (swarm seed 5
    after a power cut: a FINAL refresh re-wrote older answers after it).
    """

    __slots__ = ("size", "_clients", "_count", "evicted", "_others")

    def __init__(self, size: int) -> None:
        self.size = size
        self._clients: dict[int, dict[int, tuple[int, int, bytes, bytes | None]]] = {}
        self._count = 0
        self.evicted = 0
        # the DUPLICATE answers of messages that reused an answered id, by (client, t):
        # a replay of one is answered from here, not ordered again (§4.13), FIFO-bounded
        self._others: dict[tuple[int, int], tuple[int, int, bytes, bytes]] = {}

    def get(self, key: tuple[int, int]) -> tuple[int, int, bytes, bytes | None] | None:
        entries = self._clients.get(key[0])
        return None if entries is None else entries.get(key[1])

    @staticmethod
    def same_message(cached: tuple, signature) -> bool:
        """Whether ``cached`` answers the message signed ``signature`` (Ed25519 signatures
        are deterministic: one key, one content, one signature). Unknown (None): assumed."""
        return cached[3] is None or cached[3] == signature

    def put(self, key: tuple[int, int], view: int, seq: int, frame: bytes,
            signature: bytes | None = None) -> None:
        client, t = key
        clients = self._clients
        entries = clients.get(client)
        if entries is None:
            entries = clients[client] = {}
        value = (view, seq, frame, None if signature is None else bytes(signature))
        if t in entries:
            entries[t] = value                  # re-written: keeps its place
        else:
            self._count += 1
            out_of_order = bool(entries) and t < next(reversed(entries))
            entries[t] = value
            if out_of_order:
                # executed out of id order (rare): put in its place, so that the first
                # entry stays the client's oldest message (at most 64 entries)
                ordered = sorted(entries.items())
                entries.clear()
                entries.update(ordered)
        if len(entries) > PER_CLIENT_REPLIES:
            del entries[next(iter(entries))]
            self._count -= 1
            self.evicted += 1
        while self._count > self.size:
            largest = max(clients, key=lambda c: len(clients[c]))
            entries = clients[largest]
            del entries[next(iter(entries))]
            self._count -= 1
            self.evicted += 1
            if not entries:
                del clients[largest]

    def put_other(self, key: tuple[int, int], view: int, seq: int, frame: bytes,
                  signature: bytes) -> None:
        """The answer of a message that reused the answered id ``key`` (its own DUPLICATE
        results), kept apart: the answer of the message first answered stays in place."""
        others = self._others
        others.pop(key, None)
        others[key] = (view, seq, frame, bytes(signature))
        if len(others) > OTHER_ANSWERS_MAX:
            del others[next(iter(others))]

    def get_other(self, key: tuple[int, int], signature) -> tuple | None:
        """The answer ``put_other`` kept for the message signed ``signature`` under ``key``."""
        held = self._others.get(key)
        return held if held is not None and held[3] == signature else None

    def drop_above(self, seq: int) -> None:
        """Forget replies for batches above ``seq`` (they were rolled back)."""
        for key in [key for key, v in self._others.items() if v[1] > seq]:
            del self._others[key]
        for client in list(self._clients):
            entries = self._clients[client]
            for t in [t for t, v in entries.items() if v[1] > seq]:
                del entries[t]
                self._count -= 1
            if not entries:
                del self._clients[client]

    def __len__(self) -> int:
        return self._count


class PendingSet:
    """Client messages the primary has queued or proposed but not yet executed, at most
    ``limit`` in all and ``share`` per client (§4.13: one client cannot fill the queue).

    A key leaves when its message executes here (``PoEReplica.inform``), when the state
    says it executed or its proposal's position was decided without us (a state transfer:
    ``PoEReplica._settle_executed``), and all at once when the view changes. A key that
    stays behind drops every retry of its message as request-pending and holds a slot of
    its client's share for good."""

    __slots__ = ("limit", "share", "_keys", "_per_client")

    def __init__(self, limit: int, share: int | None = None) -> None:
        self.limit = limit
        self.share = limit if share is None else share
        self._keys: set[tuple[int, int]] = set()
        self._per_client: dict[int, int] = {}

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._keys

    def full(self) -> bool:
        return len(self._keys) >= self.limit

    def over_share(self, client: int) -> bool:
        """``client`` already has its share of the queue."""
        return self._per_client.get(client, 0) >= self.share

    def of(self, client: int) -> int:
        return self._per_client.get(client, 0)

    def add(self, key: tuple[int, int]) -> None:
        if key not in self._keys:
            self._keys.add(key)
            per = self._per_client
            per[key[0]] = per.get(key[0], 0) + 1

    def discard(self, key: tuple[int, int]) -> None:
        if key in self._keys:
            self._keys.remove(key)
            per = self._per_client
            left = per[key[0]] - 1
            if left:
                per[key[0]] = left
            else:
                del per[key[0]]

    def clear(self) -> None:
        self._keys.clear()
        self._per_client.clear()

    def retain(self, keep) -> int:
        """Discard every key not in ``keep`` (with its client's share slot); how many went."""
        gone = [key for key in self._keys if key not in keep]
        for key in gone:
            self.discard(key)
        return len(gone)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
