"""The PoE client (PROTOCOL.md §2.4): a sans-IO state machine.

What it is for: turning operations into signed client messages (several requests under one
Ed25519 signature, §1.5), sending them to the primary, collecting INFORMs and deciding when
``nf`` replicas agree on (view, seq, index, results) — the proof of execution. On a timeout
it re-sends to every replica with doubling backoff; after its deadline it gives up with an
explicit "outcome unknown": it never hangs.

An INFORM carries one entry per message of this client in one batch (one MAC for all): it
is one vote of its sender for each message it covers.

What it must never do: accept fewer than nf matching INFORMs from distinct replicas, count a
replica twice for a message, accept an INFORM whose MAC does not verify or whose request
ids are not the ones it sent, or read a clock (time is passed in); or send a message
``ANSWER_WINDOW`` or more messages after its oldest undecided one. The replicas keep the
answers of a client's ``ANSWER_WINDOW`` newest messages (PROTOCOL.md §2.2 client_table, a
sliding window): while the oldest undecided message waits for its proof, its answer must
stay among them, or no replica could ever answer its retries again (it executed: it is not
ordered again). Nor send a message whose last request id is ``KV_WINDOW`` or more above the
first id of its oldest undecided message: the replicas' exactly-once window holds
``KV_WINDOW`` ids per client (§2.2, §10 row 7; ``poe._core.kv.WINDOW``), and an id below it
is STALE -- not executed, and not telling whether it ever was -- so every message still
awaited must stay inside it, whatever order the replicas execute them in (retries after a
view change, forwards). A message submitted beyond either bound waits, unsent (no timer, no
deadline yet), until older ones are decided (swarm seed 9012). The oldest undecided message
always goes out: a message holds at most 256 requests (``codec.MAX_OPS_PER_MESSAGE`` <=
``KV_WINDOW``), so it always fits.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from poe._core import codec
from poe._core.codec import WireError
from poe._core.kv import WINDOW as KV_WINDOW
from poe.crypto.base import CryptoSuite, replica as replica_party
from poe.crypto.statements import request_statement
from poe.protocol.actions import CancelTimer, SetTimer, Send
from poe.protocol.config import ProtocolConfig
from poe.protocol.poe.clients import PER_CLIENT_REPLIES

TIMER_RETRY = "retry"
# messages from the oldest undecided one to the newest sent, at most: the replicas' answers
# per client (ReplyCache: its 64 newest messages)
ANSWER_WINDOW = PER_CLIENT_REPLIES
# request ids from the first of the oldest undecided message to the last sent, fewer than:
# the kv's exactly-once window (below it an id is STALE)
assert codec.MAX_OPS_PER_MESSAGE <= KV_WINDOW


def retry_frame(frame: bytes, attempt: int) -> bytes:
    """The unsealed REQUEST ``frame`` as retransmission number ``attempt`` (>= 1): the
    sequence field carries the number and the flags announce a MAC, which the client
    appends per replica with their pairwise key. A replica counts only such retries of an
    answered message toward "client unserved" (§4.12): no replica can forge one and a
    replayed one carries a number already counted."""
    b = bytearray(frame)
    b[4:6] = (int.from_bytes(b[4:6], "little") & ~3 | codec.AUTH_MAC).to_bytes(2, "little")
    b[24:32] = attempt.to_bytes(8, "little")
    return bytes(b)


@dataclass(frozen=True, slots=True)
class Completed:
    """Message ``handle`` holds a proof of execution: nf replicas agree that it ran as
    message ``index`` of batch ``seq`` in ``view`` with ``results`` ((t, status, value) per
    operation). ``replicas`` are the ones whose INFORMs form the proof."""

    handle: int
    view: int
    seq: int
    index: int
    results: tuple
    replicas: tuple[int, ...]
    latency_s: float
    final: bool = False      # proven by f+1 matching FINAL INFORMs (a stable position)


@dataclass(frozen=True, slots=True)
class OutcomeUnknown:
    """Message ``handle`` got no proof of execution before its deadline. It may or may not
    have executed; re-submitting the same operations would get new request ids."""

    handle: int
    reason: str


TAG_END = 6 + codec.INFORM_TAG_SIZE       # an INFORM entry: u32 idx | u16 count | tag | ...


@dataclass(slots=True)
class _Pending:
    frame: bytes
    ids: tuple[int, ...]
    sent_at: float
    deadline: float
    backoff: float
    votes: dict[int, tuple[int, int, bytes]]     # replica -> (view, seq, its entry)
    tally: Counter
    final: dict[int, tuple[int, bytes]]          # replica -> (seq, entry) it says is final
    views: dict[int, int]                        # replica -> view of its latest INFORM
    retries: int = 0                             # retransmissions so far
    tag: bytes = b""                             # its signature[:16]: an entry's tag
    number: int = 0                              # messages submitted before it
    held: bytes | None = None                    # signed, not sent yet (ANSWER_WINDOW)


class PoEClient:
    """One client. ``submit`` returns a handle (the first request id of the message)."""

    # PoE: nf INFORMs agreeing on (view, seq, results) are a proof of execution (§2.4).
    # The PBFT baseline's client accepts f+1 replies agreeing on (seq, results).
    match_view = True

    def __init__(self, config: ProtocolConfig, client_id: int, crypto: CryptoSuite, *,
                 retry_timeout_s: float = 1.0, retry_timeout_max_s: float = 8.0,
                 deadline_s: float = 30.0, outstanding_max: int = 1024) -> None:
        config.validate()
        if crypto.signer is None or crypto.macs is None:
            raise ValueError("a client needs its signing key and its MAC keys")
        if not 0 < retry_timeout_s <= retry_timeout_max_s or deadline_s <= 0:
            raise ValueError("need 0 < retry_timeout_s <= retry_timeout_max_s and deadline_s > 0")
        self.config = config
        self.id = client_id
        self.crypto = crypto
        self.nf = config.nf
        self.quorum = self.proof_quorum(config)
        self.f = config.f
        self.view = 0
        self.next_t = 1
        self.retry_timeout_s = retry_timeout_s
        self.retry_timeout_max_s = retry_timeout_max_s
        self.deadline_s = deadline_s
        self.outstanding_max = outstanding_max
        # undecided messages in submission order (handles increase): sent ones first, then
        # those held back by ANSWER_WINDOW, oldest first
        self.pending: dict[int, _Pending] = {}
        self.submitted = 0                       # messages submitted so far
        self.held = 0                            # of the pending ones, not sent yet
        self._replicas = [replica_party(i) for i in range(config.n)]
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()

    @staticmethod
    def proof_quorum(config: ProtocolConfig) -> int:
        """Matching replies that decide a message: nf for PoE (speculative execution)."""
        return config.nf

    # ------------------------------------------------------------------ requests

    def submit(self, operations, now: float) -> tuple[int, list]:
        """Sign one client message carrying ``operations`` ((key, code, value) each) and
        send it to the primary we believe in. Returns (handle, actions)."""
        if len(self.pending) >= self.outstanding_max:
            raise RuntimeError(f"client {self.id} already has {self.outstanding_max} messages "
                               "outstanding; wait for results before submitting more")
        ops = []
        for key, code, value in operations:
            ops.append((self.next_t, key, code, value))
            self.next_t += 1
        unsigned = codec.pack_client_message(self.id, ops)
        signature = self.crypto.signer.sign(request_statement(unsigned))
        handle = ops[0][0]
        p = _Pending(b"", tuple(op[0] for op in ops), now, now + self.deadline_s,
                     self.retry_timeout_s, {}, Counter(), {}, {},
                     tag=bytes(signature[:codec.INFORM_TAG_SIZE]), number=self.submitted,
                     held=unsigned + signature)
        self.pending[handle] = p
        self.submitted += 1
        self.held += 1
        self.stats["submitted"] += 1
        out = self._send_held(now)
        if p.held is not None:
            # held by its own bound, or behind an older held one (messages go out in order)
            oldest = next(iter(self.pending.values()))
            self.stats[self._held_by(p, oldest) or "held-for-answer-window"] += 1
        return handle, out

    @staticmethod
    def _held_by(p: _Pending, oldest: _Pending) -> str | None:
        """The bound that keeps ``p`` from going out while ``oldest`` is the oldest undecided
        message (its stat's name), or None: ANSWER_WINDOW messages, or KV_WINDOW request ids
        (the oldest itself always goes out)."""
        if p.number - oldest.number >= ANSWER_WINDOW:
            return "held-for-answer-window"
        if p is not oldest and p.ids[-1] - oldest.ids[0] >= KV_WINDOW:
            return "held-for-id-window"
        return None

    def _send_held(self, now: float) -> list:
        """Send the held messages, oldest first, while each is fewer than ANSWER_WINDOW
        messages after the oldest undecided one and its last request id is less than
        KV_WINDOW above that one's first (PROTOCOL.md §2.2: the replicas' window of answers
        per client, and their exactly-once window of request ids, must cover every message
        still waiting for its proof)."""
        out: list = []
        if not self.held:
            return out
        pending = self.pending
        oldest = next(iter(pending.values()))       # the oldest undecided message
        for handle, p in pending.items():
            if p.held is None:
                continue
            if self._held_by(p, oldest):
                break                   # numbers and ids only grow: so are the newer ones
            assert p is oldest or oldest.held is None, \
                "§2.2: messages go out in submission order"
            assert p.ids[-1] - oldest.ids[0] < KV_WINDOW, \
                "§2.2: the ids a client awaits stay inside the replicas' exactly-once window"
            p.frame = codec.encode_request(p.held, self.view)
            p.held = None
            self.held -= 1
            p.deadline = now + self.deadline_s      # its full chance from when it leaves
            out.append(Send(self.config.primary(self.view), p.frame))
            out.append(SetTimer(TIMER_RETRY, handle, min(now + p.backoff, p.deadline)))
        return out

    # ------------------------------------------------------------------ INFORM

    def _authentic_inform(self, data: bytes):
        """The decoded INFORM if it is one, from a replica, MAC-verified and for us; else
        None (the drop counted)."""
        try:
            m = codec.decode(data)
        except WireError:
            self.drops["malformed"] += 1
            return None
        if m.kind != codec.INFORM:
            self.drops["unexpected-kind"] += 1
            return None
        if m.sender >= self.config.n or m.auth_kind != codec.AUTH_MAC:
            self.drops["unknown-sender"] += 1
            return None
        if not self.crypto.macs.verify(self._replicas[m.sender], m.signed, m.auth):
            self.drops["bad-mac"] += 1
            return None
        if m.client != self.id:
            self.drops["not-for-us"] += 1
            return None
        return m

    def on_message(self, data: bytes, now: float) -> list:
        """An INFORM from a replica: one entry (idx, results) per message of ours in batch k.
        It counts as one vote of its sender for each message it covers (§2.4: nf INFORMs
        from distinct replicas agreeing on (v, k, idx, r) per message). Returns actions and
        one Completed per message it decides.

        The frame is dropped whole (counted) if any entry is one a correct replica never
        sends: a message named twice, one we never sent, or results not matching the
        request count of the message. Entries for messages already decided are skipped."""
        m = self._authentic_inform(data)
        if m is None:
            return []
        pending = self.pending
        live = []
        seen = set()
        late = 0
        for j, (handle, count, entry) in enumerate(m.votes()):
            if handle in seen:
                self.drops["inform-repeats-message"] += 1
                return []
            seen.add(handle)
            p = pending.get(handle)
            if p is None or p.held is not None:
                if handle >= self.next_t or p is not None:
                    self.drops["inform-for-unsent-message"] += 1
                    return []
                late += 1                # already decided (or given up): nothing to count
                continue
            if entry[6:TAG_END] != p.tag:
                # an answer of another message under this id (another process acting as
                # this client id): never ours, whatever its results (issue 16)
                self.drops["inform-for-other-message"] += 1
                continue
            if count != len(p.ids):
                self.drops["wrong-request-ids"] += 1
                return []
            live.append((j, handle, p, entry))
        if late:
            self.drops["inform-after-decision"] += late
        out: list = []
        for j, handle, p, entry in live:
            out += self._vote(m, j, handle, p, entry, now)
        return out

    def _vote(self, m, j: int, handle: int, p: _Pending, entry: bytes, now: float) -> list:
        """Count entry j of INFORM ``m`` as its sender's vote for message ``handle``."""
        sender = m.sender
        vote = (m.view if self.match_view else 0, m.seq, entry)
        p.views[sender] = m.view
        if m.final:
            # the sender vouches that seq is at or below its stable checkpoint: f+1 matching
            # such INFORMs include a correct replica, so the position and result are final
            p.final[sender] = vote[1:]
            backers = tuple(sorted(r for r, v in p.final.items() if v == vote[1:]))
            if len(backers) >= self.f + 1 and self._ids_match(m, j, p):
                return self._complete(handle, p, m, j, backers, now, final=True)
        previous = p.votes.get(sender)
        if previous is not None:
            if previous == vote:
                self.drops["duplicate-inform"] += 1
                return []
            # the replica re-informs after a view change: its newer INFORM replaces the old
            p.tally[previous] -= 1
        p.votes[sender] = vote
        tally = p.tally[vote] + 1
        p.tally[vote] = tally
        if tally < self.quorum or not self._ids_match(m, j, p):
            return []
        proof = tuple(sorted(r for r, v in p.votes.items() if v == vote))
        assert len(proof) == tally >= self.quorum, \
            "§2.4: a proof of execution is nf matching INFORMs from distinct replicas"
        return self._complete(handle, p, m, j, proof, now)

    def _ids_match(self, m, j: int, p: _Pending) -> bool:
        if m.request_ids(j) == p.ids:
            return True
        # f+1 replicas (one correct) never agree on other ids: count it, keep waiting
        self.drops["wrong-request-ids"] += 1
        return False

    def _complete(self, handle: int, p: _Pending, m, j: int, proof, now: float,
                  final: bool = False) -> list:
        del self.pending[handle]
        # the view to send to next: one at least f+1 of the proof's replicas (so one correct
        # replica) are in; a single faulty replica's INFORM must not point us at another
        # primary (with PoE's nf matching INFORMs they all carry m.view anyway)
        views = sorted((p.views.get(r, 0) for r in proof), reverse=True)
        if len(views) > self.f:
            self.view = max(self.view, views[self.f])
        self.stats["completed-final" if final else "completed"] += 1
        return [CancelTimer(TIMER_RETRY, handle),
                Completed(handle, m.view, m.seq, m.index(j), m.results(j), proof,
                          now - p.sent_at, final), *self._send_held(now)]

    # ------------------------------------------------------------------ timers

    def on_timeout(self, kind: str, key: int, now: float) -> list:
        p = self.pending.get(key)
        if kind != TIMER_RETRY or p is None or p.held is not None:
            return []
        if now >= p.deadline:
            del self.pending[key]
            self.stats["outcome-unknown"] += 1
            return [OutcomeUnknown(key, f"no {self.quorum} matching INFORMs within "
                                        f"{self.deadline_s} s"), *self._send_held(now)]
        # retransmit to every replica (§2.4 step 3); backups forward it to the primary
        self.stats["retransmitted"] += 1
        p.retries += 1
        frame = retry_frame(p.frame, p.retries)
        mac = self.crypto.macs.mac
        out: list = [Send(r, codec.seal(frame, mac(self._replicas[r], frame)))
                     for r in range(self.config.n)]
        p.backoff = min(p.backoff * 2, self.retry_timeout_max_s)
        out.append(SetTimer(TIMER_RETRY, key, min(now + p.backoff, p.deadline)))
        return out
