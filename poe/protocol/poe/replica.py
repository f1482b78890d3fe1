"""The PoE replica, normal case: PROPOSE -> SUPPORT -> CERTIFY -> execute -> INFORM.

Read it beside PROTOCOL.md: §2.5 (primary), §2.6 (propose), §2.7 (certify), §2.8 (execute
and inform), §3.2 (MAC variant: all-to-all SUPPORT), §5 (checkpoints, window), §10.
Handlers are named after the paper's steps. The view change (§4) slots in through
``status``, ``view`` and ``kstart``; it lives in its own module.

What it is for: a pure, deterministic state machine. ``on_message(data, now)`` and
``on_timeout(kind, key, now)`` take bytes and time, return a list of actions
(poe.protocol.actions). Every message from a peer is validated (codec structure, sender,
authentication, view, window, certificates, client signatures, sizes); an invalid one is
dropped and counted in ``drops`` by reason, never raised.

What it must never do: read a clock, a socket, a file or randomness; raise on peer input;
execute out of order; INFORM while not in the normal case of its view; let any table grow
beyond its configured bound.
"""
from __future__ import annotations

from collections import Counter, deque

from poe._core import codec
from poe._core.codec import ST_DUPLICATE, ST_OK, Batch, WireError, seal
from poe._core.digest import batch_digest, block_hash
from poe._core.kv import KVStore
from poe._core.window import Window
from poe.crypto.base import Certificate, CryptoSuite, client as client_party
from poe.crypto.base import replica as replica_party
from poe.crypto.errors import CombineError
from poe.crypto.statements import checkpoint_statement, request_statement, support_statement
from poe.protocol.actions import (
    Action, Broadcast, Executed, Persist, Reply, SetTimer, Send, Stable,
)
from poe.protocol.config import ProtocolConfig
from poe.protocol.drops import DropCounter
from poe.protocol.pacemaker import Pacemaker
from poe.protocol.poe.checkpoint import CheckpointTracker
from poe.protocol.poe.clients import (PendingSet, ReplyCache, first_bad_client_signature,
                                      inform_frames)
from poe.protocol.poe.evidence import EvidenceLog
from poe.protocol.poe.state_transfer import StateTransferMixin
from poe.protocol.poe.view_change import (
    NOOP_DIGEST, NORMAL, TIMER_NEW_VIEW, TIMER_PROGRESS, VIEW_CHANGE, ViewChangeMixin,
)
from poe.protocol.quorum import popcount

__all__ = ["PoEReplica", "Slot", "NORMAL", "VIEW_CHANGE"]

TIMER_BATCH = "batch"        # close the open batch (primary)
TIMER_TICK = "tick"          # retransmit proposals, fetch missing slots, resend checkpoints

SUPPORT_VOTES = 0            # window vote kind: SUPPORTs (MAC mode)
FETCH_AHEAD = 32             # slots a lagging replica asks for at once
FETCH_WANTED_MAX = 4         # digests a slot remembers having FETCHed
FORWARDS_PER_TIMEOUT = 3     # forwards of one client message per retransmission timeout
ZERO_DIGEST = b"\0" * 32     # FETCH for "whatever you hold at k"

# authentication each kind must carry: every replica-to-replica frame is MAC-authenticated
# before anything expensive happens (PROTOCOL.md §4.12, §4.13), CERTIFY and CHECKPOINT too:
# a frame that merely names a replica proves nothing about it
_AUTH = {
    codec.PROPOSE: (codec.AUTH_MAC,),
    codec.SUPPORT: (codec.AUTH_MAC,),
    codec.CERTIFY: (codec.AUTH_MAC,),
    codec.CHECKPOINT: (codec.AUTH_MAC,),
    codec.FETCH: (codec.AUTH_MAC,),
    codec.FETCH_REPLY: (codec.AUTH_MAC,),
    codec.VC_REQUEST: (codec.AUTH_SIG,),
    codec.NV_PROPOSE: (codec.AUTH_MAC,),
    codec.STATE_REQ: (codec.AUTH_MAC,),
    codec.STATE_REPLY: (codec.AUTH_MAC,),
}


class Slot:
    """Everything a replica holds for one sequence number k inside the window."""

    __slots__ = (
        "prop_view", "batch", "digest",            # accepted proposal (or fetched batch)
        "cert_view", "cert_digest", "cert",        # highest certificate held
        "committed", "executed",
        "shares", "bad",                           # primary, TS mode: shares by replica
        "own_support", "early",                    # own SUPPORT frame; SUPPORTs before PROPOSE
        "proposal", "proposed_at", "fetched_at", "seen_at",
        "results", "wanted",                       # kept results; digests we FETCHed
    )

    def __init__(self) -> None:
        self.prop_view = -1
        self.batch: Batch | None = None
        self.digest: bytes | None = None
        self.cert_view = -1
        self.cert_digest: bytes | None = None
        self.cert: Certificate | None = None
        self.committed = False
        self.executed = False
        self.shares: dict[int, bytes] | None = None
        self.bad: set[int] | None = None
        self.own_support: bytes | None = None
        self.early: dict[int, bytes] | None = None
        self.proposal: bytes | None = None
        self.proposed_at = 0.0
        self.fetched_at = -1e18
        self.seen_at = 0.0                          # when we first heard of this slot
        self.results = None                         # kv results while executed
        self.wanted: set[bytes] | None = None       # digests asked for by FETCH (§4.11)


class PoEReplica(ViewChangeMixin, StateTransferMixin):
    """One PoE replica. ``config.mode`` selects the TS or the MAC variant."""

    _auth = _AUTH                # message kinds this protocol takes, and their authentication
    vote_kinds = 1               # window vote kinds (SUPPORT); the PBFT baseline adds COMMIT
    abstain_through_seq = 0      # quarantined store: no vote until stable reaches it (restore)

    def __init__(self, config: ProtocolConfig, replica_id: int, crypto: CryptoSuite,
                 kv: KVStore | None = None) -> None:
        config.validate()
        if not 0 <= replica_id < config.n:
            raise ValueError(f"replica id {replica_id} outside 0..{config.n - 1}")
        if crypto.macs is None or crypto.signer is None or crypto.verifier is None:
            raise ValueError("a replica needs MAC keys, a signer and a signature verifier")
        if config.mode == "ts" and (crypto.threshold is None or crypto.threshold_signer is None):
            raise ValueError("TS mode needs a threshold signer and verifier (or use mode 'mac')")
        self.config = config
        self.id = replica_id
        self.n = config.n
        self.f = config.f
        self.nf = config.nf
        self.ts = config.mode == "ts"
        self.crypto = crypto
        self._macs = crypto.macs
        self._replicas = [replica_party(i) for i in range(self.n)]
        self._clients: dict[int, object] = {}

        self.view = 0
        self.status = NORMAL
        self.kstart = 0                  # highest k fixed by the NV-PROPOSE of this view
        self.window = Window(config.window, self.n, self.vote_kinds)
        self.kv = kv if kv is not None else KVStore(seed=config.kv_seed,
                                                    zero_payload=config.zero_payload)
        self.k_exec = 0
        self.head = config.genesis       # H(B_k_exec)
        self.block_hashes: dict[int, bytes] = {0: config.genesis}
        self.checkpoints = CheckpointTracker(self.nf, config.checkpoint_period, config.genesis)
        self.own_checkpoint: bytes | None = None   # last CHECKPOINT frame we broadcast
        self.own_checkpoints: dict[int, bytes] = {}  # ours from the stable one up
        self._ckpt_served: dict[int, float] = {}
        self.behind: codec.CheckpointProof | None = None  # stable proof above k_exec

        self.replies = ReplyCache(config.reply_cache_size)
        self.pending = PendingSet(config.pending_requests_max, config.client_pending_max)
        self.open_messages: list[object] = []
        self.open_ops = 0
        self.ready: deque[Batch] = deque()
        self.next_k = 1
        self.batch_timer = False
        self.tick_armed = False
        self.last_progress = 0.0
        self.max_seen = 0                # highest k with any evidence (proposal, cert)
        self.evidence = EvidenceLog()    # per position, outlives views (§4.11)
        self.pacemaker = Pacemaker(config.view_change_timeout_s)   # T_exec / T_req (§4.12)
        self.diverged = False            # our executed prefix is not the agreed one (§4.6)

        self.drops = DropCounter()        # by reason; by MAC-authenticated sender too
        self.stats: Counter[str] = Counter()
        self._init_view_change()
        self._init_state_transfer()
        # PROPOSE / SUPPORT / CERTIFY of this view for the next window, kept until our window
        # moves (a replica one checkpoint behind would otherwise lose a whole window of votes
        # and wait a retransmission timeout for each slot): (k, kind, sender) -> message
        self._ahead: dict[tuple[int, int, int], object] = {}
        self._ahead_view = 0
        self._fetch_served: dict[tuple[int, int, bytes], float] = {}   # FETCH answers
        self._forwarded_at: dict[tuple[int, int], tuple[float, int]] = {}   # forwards
        self._heard: set[int] = set()    # replicas that SUPPORTed in this view lately
        self.now = 0.0                   # time of the input being handled

    # ------------------------------------------------------------------ small helpers

    @property
    def primary(self) -> int:
        return self.config.primary(self.view)

    @property
    def is_primary(self) -> bool:
        return self.config.primary(self.view) == self.id

    def _client(self, cid: int):
        party = self._clients.get(cid)
        if party is None:
            if len(self._clients) > 1 << 20:
                self._clients.clear()
            party = self._clients[cid] = client_party(cid)
        return party

    def _drop(self, reason: str) -> list[Action]:
        self.drops[reason] += 1
        return []

    def abstaining(self) -> bool:
        """Our store was quarantined (docs/storage.md, "Store corruption"): we may have voted
        on positions up to ``abstain_through_seq`` and cannot prove how, so we send no vote
        (SUPPORT, PROPOSE, COMMIT, CHECKPOINT, VC-REQUEST) until a stable checkpoint passes
        them (PROTOCOL.md §4.11)."""
        if self.checkpoints.stable.seq >= self.abstain_through_seq:
            return False
        self.stats["abstained"] += 1
        return True

    def _sealed_for(self, frame: bytes, to: int) -> bytes:
        return seal(frame, self._macs.mac(self._replicas[to], frame))

    def _send_others(self, frame: bytes, out: list[Action]) -> None:
        """MAC-authenticated frame to every other replica (one tag per receiver)."""
        for r in range(self.n):
            if r != self.id:
                out.append(Send(r, self._sealed_for(frame, r)))

    def _slot(self, k: int, now: float = 0.0) -> Slot:
        slot = self.window.payload(k)
        if slot is None:
            slot = Slot()
            slot.seen_at = now
            self.window.set_payload(k, slot)
        return slot

    def _arm_tick(self, now: float, out: list[Action]) -> None:
        if not self.tick_armed:
            self.tick_armed = True
            out.append(SetTimer(TIMER_TICK, 0, now + self.config.retransmit_timeout_s))

    def _once_per_timeout(self, last: dict, key: int, now: float) -> bool:
        """True (and ``now`` recorded) if ``key`` was not served within the last
        retransmission timeout: answers to a lagging peer, at most one per timeout each."""
        if now - last.get(key, -1e18) < self.config.retransmit_timeout_s:
            return False
        last[key] = now
        return True

    def _offer_checkpoint(self, k: int, sender: int, now: float, reason: str) -> list[Action]:
        """The sender is at or below checkpoint k, stable here: our own CHECKPOINT vote for
        it may be what it lacks (e.g. after a restart). Counted as a drop under ``reason``;
        the vote is sent at most once per timeout per peer."""
        self.drops[reason] += 1
        frame = self.own_checkpoints.get(k)
        if frame is None or not self._once_per_timeout(self._ckpt_served, sender, now):
            return []
        return [Send(sender, self._sealed_for(frame, sender))]

    def _window_moved(self, now: float, out: list[Action]) -> None:
        """The low watermark moved (a stable checkpoint, a state transfer): batches waiting
        for room are proposed, kept next-window messages handled."""
        if self.ready and self.is_primary and self.status == NORMAL:
            self._propose_ready(now, out)
        self._replay_ahead(now, out)

    def _stash_ahead(self, m, k: int) -> bool:
        """Keep a current-view message for the window after ours (one per slot, kind and
        sender: at most 3·n·window entries, already authenticated). Replayed through its
        handler, with every check, once the window has moved (``_replay_ahead``)."""
        window = self.window
        if not window.high < k <= window.high + self.config.window or self.status != NORMAL:
            return False
        if self._ahead_view != self.view:
            self._ahead.clear()
            self._ahead_view = self.view
        key = (k, m.kind, m.sender)
        if key in self._ahead:
            self.drops["ahead-duplicate"] += 1   # handled (a copy), counted once as a drop
            return True
        self._ahead[key] = m
        self.stats["kept-ahead"] += 1
        return True

    def _replay_ahead(self, now: float, out: list[Action]) -> None:
        """Our window moved: hand the kept messages that now fit to their handlers."""
        if not self._ahead:
            return
        if self._ahead_view != self.view or self.status != NORMAL:
            self._ahead.clear()
            return
        high = self.window.high
        due = sorted(key for key in self._ahead if key[0] <= high)
        for key in due:
            m = self._ahead.pop(key, None)       # a nested replay may have taken it
            if m is None or key[0] <= self.window.low or self._ahead_view != self.view:
                continue                         # moved past it meanwhile (state transfer)
            self.stats["replayed-ahead"] += 1
            drops = self.drops
            was, drops.sender = drops.sender, m.sender  # its drops are its sender's
            try:
                out.extend(self._handle_kept(m, now))
            finally:
                drops.sender = was

    def _handle_kept(self, m, now: float) -> list[Action]:
        """The handler of a kept next-window message (the PBFT baseline adds COMMIT)."""
        if m.kind == codec.PROPOSE:
            return self.on_propose(m, now)
        if m.kind == codec.SUPPORT:
            return self.on_support(m, now)
        return self.on_certify(m, now)

    def status_line(self) -> str:
        """One-line state summary for traces."""
        return (f"r{self.id} v{self.view} {self.status} w({self.window.low},{self.window.high}]"
                f" exec {self.k_exec} stable {self.checkpoints.stable.seq}")

    # ------------------------------------------------------------------ inputs

    def on_message(self, data: bytes, now: float) -> list[Action]:
        """A frame from the network (a replica or a client)."""
        self.now = now
        drops = self.drops
        drops.sender = -1
        try:
            m = codec.decode(data)
        except WireError:
            return self._drop("malformed")
        kind = m.kind
        if kind == codec.REQUEST:
            return self.on_request(m, now)
        allowed = self._auth.get(kind)
        if allowed is None:
            return self._drop("unexpected-kind")
        sender = m.sender
        if sender >= self.n or sender == self.id:
            return self._drop("unknown-sender")
        if m.auth_kind not in allowed:
            return self._drop("wrong-auth")
        if m.auth_kind == codec.AUTH_MAC and not self._macs.verify(
                self._replicas[sender], m.signed, m.auth):
            return self._drop("bad-mac")
        if m.auth_kind == codec.AUTH_MAC:
            drops.sender = sender            # drops from here on are this replica's doing
        if kind == codec.SUPPORT:
            return self.on_support(m, now)
        if kind == codec.CERTIFY:
            return self.on_certify(m, now)
        if kind == codec.PROPOSE:
            return self.on_propose(m, now)
        if kind == codec.CHECKPOINT:
            return self.on_checkpoint(m, now)
        if kind == codec.FETCH:
            return self.on_fetch(m, now)
        if kind == codec.FETCH_REPLY:
            return self.on_fetch_reply(m, now)
        return self.on_view_change_message(m, now)

    def on_view_change_message(self, m: codec.Message, now: float) -> list[Action]:
        """VC-REQUEST and NV-PROPOSE (view_change.py); STATE-REQ/REPLY (state transfer)."""
        if m.kind == codec.VC_REQUEST:
            return self.on_vc_request(m, now)
        if m.kind == codec.NV_PROPOSE:
            return self.on_nv_propose(m, now)
        if m.kind == codec.STATE_REQ:
            return self.on_state_req(m, now)
        return self.on_state_reply(m, now)

    def on_timeout(self, kind: str, key: int, now: float) -> list[Action]:
        self.now = now
        self.drops.sender = -1
        if kind == TIMER_BATCH:
            self.batch_timer = False
            out: list[Action] = []
            if self.is_primary and self.status == NORMAL and self.open_messages:
                self._close_batch()
                self._propose_ready(now, out)
            return out
        if kind == TIMER_TICK:
            self.tick_armed = False
            return self._tick(now)
        if kind == TIMER_PROGRESS:
            return self._on_progress_timeout(now)
        if kind == TIMER_NEW_VIEW:
            return self.on_new_view_timeout(key, now)
        return self._drop("unknown-timer")

    # ------------------------------------------------------------------ client requests

    def on_request(self, m: codec.Request, now: float) -> list[Action]:
        """A client message, sent to us directly or forwarded (§2.5, §4.2 forwarding)."""
        cid = m.client
        batch = m.batch
        key = (cid, batch.first_request_id(0))
        cached = answered = self.replies.get(key)
        if cached is not None and not ReplyCache.same_message(cached, batch.signature(0)):
            # another message under an answered id (two processes acting as one client):
            # not the one answered; ordered like any message, the kv answers DUPLICATE,
            # and once answered a replay of it gets that answer (not a new ordering, §4.13)
            self.stats["request-reuses-answered-id"] += 1
            cached = None
            other = self.replies.get_other(key, batch.signature(0))
            if other is not None and not self.diverged:
                self.stats["reply-from-cache-other"] += 1
                return [Reply(cid, other[2])]
        if cached is not None and self.diverged:
            # our executed prefix is not the agreed one: no INFORM from it (§4.6 step 1)
            return self._drop("request-while-diverged")
        if cached is not None:
            self.stats["reply-from-cache"] += 1
            if cached[1] <= self.checkpoints.stable.seq and self.status == NORMAL \
                    and (cached[0] != self.view or not cached[2][4] & codec.FLAG_FINAL):
                cached = self._refresh_final_reply(key, cid, cached)
            out: list[Action] = [Reply(cid, cached[2])]
            if self.status == NORMAL and cached[0] == self.view and not self.is_primary:
                self._count_unserved(m, key, now, out)
            return out
        if self.status != NORMAL:
            return self._drop("request-during-view-change")
        if not self.is_primary:
            # a client retry reached a backup: hand it to the primary (PROTOCOL.md §4.2),
            # but only what the primary may order (§4.12: a request failing a check the
            # primary applies is never grounds for suspicion) and its client really signed
            if batch.nops > self.config.batch_size:
                return self._drop("request-too-large")
            # a few forwards per message per retransmission timeout (§4.13): two replicas
            # in different views, each taking the other for the primary, forwarded a message
            # back and forth without end (swarm seed 795); retries and duplicates pass
            since, count = self._forwarded_at.get(key, (-1e18, 0))
            if now - since >= self.config.retransmit_timeout_s:
                since, count = now, 0
            if count >= FORWARDS_PER_TIMEOUT:
                return self._drop("request-forwarded-recently")
            if not self._client_signatures_ok(batch):
                return self._drop("bad-client-signature")
            if len(self._forwarded_at) >= self.config.forwarded_max:
                self._forwarded_at.clear()
            self._forwarded_at[key] = (since, count + 1)
            self.stats["request-forwarded"] += 1
            out: list[Action] = [Send(self.primary, bytes(m.frame))]
            if self._executed_here(cid, key[1]):
                # executed here (or below the kv's exactly-once window), its answer gone
                # from our cache: the primary answers it from its cache or orders it as a
                # no-op (DUPLICATE / STALE), or never again -- we do not wait for it (a
                # flooder's replay of an old message made a backup suspect, §4.12)
                self.stats["forwarded-executed"] += 1
            else:
                self.watch.forward(key, now)    # T_req: the primary must execute it (§4.2)
            self._arm_progress(now, out)
            return out
        if key in self.pending:
            if not self._kv_executed(cid, key[1]):
                return self._drop("request-pending")
            # §2.5: pending means queued or proposed and not yet executed, yet our state
            # says it executed: it came by a path that bypassed ``inform`` (a state
            # transfer settles the whole queue itself), or a faulty client's earlier message
            # carried this id too (ids increase inside a message only). That key leaves,
            # O(1): a walk of the queue here was O(queue) per faulty message (§4.13); a
            # copy still queued executes as a DUPLICATE. Then treat it as the executed
            # message it is (below)
            self.stats["pending-found-executed"] += 1
            self.pending.discard(key)
        if answered is None and self._kv_executed(cid, key[1]):
            # executed here (our kv's exactly-once window says so), its answer not in our
            # cache (evicted, or its position came by state transfer): ordering it again
            # executes nothing and answers nothing (a DUPLICATE, §2.8, §10 row 7). Not
            # ordered, counted: a faulty client's replays of executed messages cost no
            # consensus round (§4.13); the replicas holding its answer give it (FINAL once
            # its position is stable)
            return self._drop("request-executed-unanswered")
        if self.pending.full():
            return self._drop("primary-overloaded")
        if self.pending.over_share(cid):
            return self._drop("client-over-share")     # §4.13: one client, one share
        if batch.nops > self.config.batch_size:
            # no backup accepts a batch above batch_size (§2.6 rule 5): it would stall k
            return self._drop("request-too-large")
        if not self.crypto.verifier.verify(self._client(cid),
                                           request_statement(batch.signed_part(0)),
                                           batch.signature(0)):
            return self._drop("bad-client-signature")
        out: list[Action] = []
        if self.open_messages and self.open_ops + batch.nops > self.config.batch_size:
            self._close_batch()                  # keep every batch within batch_size
            self._propose_ready(now, out)
        self.pending.add(key)
        self.open_messages.append(batch.message(0))
        self.open_ops += batch.nops
        if self.open_ops >= self.config.batch_size:
            self._close_batch()
            self._propose_ready(now, out)
        elif not self.batch_timer:
            self.batch_timer = True
            out.append(SetTimer(TIMER_BATCH, 0, now + self.config.batch_timeout_s))
        return out

    def _executed_here(self, cid: int, t: int) -> bool:
        """Request ``t`` of client ``cid`` executed here, or is below the kv's exactly-once
        window (STALE: it can never execute): the kv's per-client table says so."""
        return self.kv.request_status(cid, t) != ST_OK

    def _kv_executed(self, cid: int, t: int) -> bool:
        """Request ``t`` of client ``cid`` is marked executed in the kv's exactly-once window
        (``kv.WINDOW`` ids; ordered again it is a DUPLICATE). Unlike ``_executed_here``, not
        an id below the window (STALE): that one may never have executed."""
        return self.kv.request_status(cid, t) == ST_DUPLICATE

    def _settle_executed(self) -> int:
        """The executed state moved without ``inform`` seeing its messages: a state transfer
        (a snapshot, or replayed batches that may not be the ones we proposed, §5.5). What
        the primary holds as pending (§2.5: queued or proposed, not yet executed) is made
        true again (a new view empties it: ``install_view``):

        * queued messages (open, or closed batches waiting for the window) that our kv says
          executed leave the queue: ordered again they execute nothing (§2.8);
        * the pending set is rebuilt from what is really queued, or proposed by us in this
          view above k_exec: a key whose proposal's position came by state transfer (so
          ``inform`` never ran for it here) goes, and its client's share slot with it
          (§4.13). Left behind, every retry of that message was dropped as
          request-pending, forever (swarm seed 9012);
        * T_req (§4.2, §4.12) stops waiting for forwarded messages our state says executed
          (or below the exactly-once window): their primary owes nothing more.

        Returns how many keys left the pending set. O(queue + window) per call: it runs
        once per state transfer."""
        executed = self._kv_executed
        keep: set = set()

        def unexecuted(b: Batch) -> Batch | None:
            """b without the messages our kv says executed (counted); None if none is left.
            Their keys are kept pending."""
            kept = [i for i in range(len(b)) if not executed(b.client(i), b.first_request_id(i))]
            keep.update((b.client(i), b.first_request_id(i)) for i in kept)
            if len(kept) == len(b):
                return b
            self.stats["queued-executed-dropped"] += len(b) - len(kept)
            return Batch.from_messages([b.message(i) for i in kept]) if kept else None

        if self.open_messages:
            queued = unexecuted(Batch.from_messages(self.open_messages))
            if queued is None:
                self.open_messages, self.open_ops = [], 0
            elif len(queued) < len(self.open_messages):
                self.open_messages = [queued.message(i) for i in range(len(queued))]
                self.open_ops = queued.nops
        if self.ready:
            self.ready = deque(b for b in map(unexecuted, self.ready) if b is not None)
        if self.is_primary:
            window = self.window
            for k in range(self.k_exec + 1, self.next_k):
                slot = window.payload(k) if window.contains(k) else None
                if slot is not None and slot.proposal is not None \
                        and slot.prop_view == self.view and slot.batch is not None:
                    b = slot.batch
                    keep.update(key for key in ((b.client(i), b.first_request_id(i))
                                                for i in range(len(b)))
                                if not executed(*key))    # a DUPLICATE there: nothing owed
        gone = self.pending.retain(keep)
        if gone:
            self.stats["pending-settled"] += gone
        if self.forwarded:
            for key in [key for key in self.forwarded if self._executed_here(*key)]:
                self.watch.executed(key)
        assert not any(executed(*key) for key in self.pending), \
            "§2.5: the primary's pending set holds only messages not yet executed"
        return gone

    def _count_unserved(self, m: codec.Request, key, now: float, out: list) -> None:
        """A retry of a message we executed and answered in this view (decision 19, §4.12).

        The client keeps retrying for longer than a view-change timeout: fewer than nf
        replicas serve it. A correct replica may be stuck alone in a view change while a
        faulty one stays silent; nothing else would ever move the view. Suspicion must be
        earned, so a retry counts only when
          * its client sealed it for us with our pairwise MAC and a retry number above the
            last one we counted (a replica replaying REQUEST frames, or anyone replaying a
            retry, cannot count one), and
          * some other replica has asked to leave this view (a VC-REQUEST for it or a later
            one): while every replica stays in the view, all nf correct ones execute and
            answer, and a retrying client is faulty or impatient, never unserved.
        A faulty client alone therefore causes no view change; one faulty replica alone
        cannot make a correct client retry."""
        if m.auth_kind != codec.AUTH_MAC or not self._macs.verify(
                self._client(m.client), m.signed, m.auth):
            self.stats["retry-unauthenticated"] += 1
            return
        verdict = self.watch.retry(key, m.seq, now, self.pacemaker.timeout_s, self.view)
        if verdict != "due":
            if verdict == "replayed":
                self.stats["retry-replayed"] += 1
            return
        view = self.view
        if not any(sender != self.id and max(held) >= view
                   for sender, held in self.vc_requests.items()):
            self.stats["retry-all-in-view"] += 1
            return
        self.watch.unserved(view)
        self.suspect("client-unserved", now, out)

    def _refresh_final_reply(self, key, cid: int, cached):
        """A retried message executed at a position at or below our stable checkpoint: that
        position is final (nf replicas vouched for the prefix; it is in every later view's
        history). We INFORM it again under the current view, flagged FINAL: replicas that
        executed it in different views then answer alike, and f+1 matching FINAL INFORMs
        are a proof of execution even where some replicas skipped it by state transfer.
        The frame covers all of the client's messages in that batch: every one of them
        still cached under the old frame gets the refreshed one."""
        m = codec.decode(cached[2])
        assert m.kind == codec.INFORM and m.client == cid and m.seq == cached[1], \
            "§2.8: the reply cache holds our own INFORM for the message"
        frame = codec.encode_inform(self.id, self.view, cached[1], m.body_bytes(), final=True)
        sealed = frame + self._macs.mac(self._client(cid), frame)
        replies = self.replies
        for j in range(len(m)):
            other = (cid, m.request_id(j))
            held = replies.get(other)
            if other != key and held is not None and held[2] is cached[2]:
                replies.put(other, self.view, cached[1], sealed, held[3])
        replies.put(key, self.view, cached[1], sealed, cached[3])
        self.stats["final-reply-refreshed"] += 1
        return (self.view, cached[1], sealed, cached[3])

    def _close_batch(self) -> None:
        self.ready.append(Batch.from_messages(self.open_messages))
        self.open_messages = []
        self.open_ops = 0

    # ------------------------------------------------------------------ primary: PROPOSE

    def _propose_ready(self, now: float, out: list[Action]) -> None:
        """Propose closed batches while the window has room (a full window holds us)."""
        if self.abstaining():
            return
        if self.next_k <= self.window.low:
            # positions up to the stable checkpoint are decided (we caught up to it by
            # state transfer, or restarted): the next proposal goes right above it
            self.next_k = self.window.low + 1
        while self.ready and self.next_k <= self.window.high:
            k = self.next_k
            self.next_k = k + 1
            self.propose(k, self.ready.popleft(), now, out)
        if self.ready:
            self.stats["window-full"] += 1

    def propose(self, k: int, batch: Batch, now: float, out: list[Action]) -> None:
        """PROPOSE(v, k, B) to all; the primary's own share / vote counts (§2.5, §10 row 21)."""
        h = batch_digest(batch)
        frame = codec.encode_propose(self.id, self.view, k, batch)
        slot = self._slot(k, now)
        slot.prop_view, slot.batch, slot.digest = self.view, batch, h
        slot.proposal, slot.proposed_at = frame, now
        self.window.set_digest(k, h)
        self.max_seen = max(self.max_seen, k)
        # our vote, before the PROPOSE leaves, with its batch (a body by (k, digest), §4.11)
        out.append(Persist(("support", self.view, k, h, batch)))
        self._send_others(frame, out)
        self.stats["proposed"] += 1
        if self.ts:
            slot.shares = {self.id: self.crypto.threshold_signer.share_sign(
                support_statement(self.view, k, h))}
            slot.bad = set()
        else:
            self.window.vote(k, SUPPORT_VOTES, self.id)
        self.evidence.support(k, self.view, h, batch)   # the PROPOSE is our SUPPORT: Q_k
        self._arm_tick(now, out)

    # ------------------------------------------------------------------ any replica: PROPOSE

    def on_propose(self, m: codec.Propose, now: float) -> list[Action]:
        """Accept a proposal (§2.6) and SUPPORT it: to the primary (TS) or to all (MAC)."""
        v, k = m.view, m.seq
        if v != self.view or self.status != NORMAL:
            self.drops["propose-wrong-view"] += 1
            return self._serve_new_view(m, now) if v < self.view else []
        if m.sender != self.primary:
            return self._drop("propose-not-primary")
        if not self.window.contains(k) or k <= self.kstart:
            # cheap checks before anything is kept (§4.13): no batch above batch_size waits
            if m.batch.nops > self.config.batch_size:
                return self._drop("propose-batch-too-large")
            if self._stash_ahead(m, k):
                return []
            return self._drop("propose-outside-window")
        slot = self._slot(k, now)
        out: list[Action] = []
        if slot.prop_view == v:
            if slot.own_support is not None and bytes(m.signed) == slot.proposal:
                # the primary retransmitted: our SUPPORT was probably lost
                self.stats["support-resent"] += 1
                self._send_support(k, slot, out)
                return out
            if bytes(m.signed) == slot.proposal:
                return self._drop("propose-duplicate")
            # two different PROPOSEs for one (v, k): the primary equivocates (§4.2)
            self._drop("propose-equivocation")
            self.suspect("equivocation", now, out)
            return out
        batch = m.batch
        if batch.nops > self.config.batch_size:
            return self._drop("propose-batch-too-large")
        if not self._client_signatures_ok(batch):
            return self._drop("propose-bad-client-signature")
        h = batch_digest(batch)
        # k may already hold another batch: certified in this view (TS), or fetched with
        # SUPPORT votes counted for its digest (MAC) that this one must not inherit
        if self.ts:
            conflict = slot.cert_view == v and slot.cert_digest != h
        else:
            conflict = slot.digest is not None and slot.digest != h
        if conflict:
            return self._drop("propose-conflicts-held-batch")
        slot.prop_view, slot.batch, slot.digest = v, batch, h
        slot.proposal = bytes(m.signed)
        self.window.set_digest(k, h)
        self.max_seen = max(self.max_seen, k)
        self.support(k, slot, out)
        self._arm_progress(now, out)
        if not self.ts:
            self.window.vote(k, SUPPORT_VOTES, m.sender)      # PROPOSE = primary's SUPPORT
            if slot.early:
                for sender, digest in slot.early.items():
                    if digest == h:
                        self.window.vote(k, SUPPORT_VOTES, sender)
                slot.early = None
            self._check_mac_commit(k, slot)
        elif slot.cert_view == v and slot.cert_digest == h:
            slot.committed = True
        self._arm_tick(now, out)
        self._progress(now, out)
        return out

    def _client_signatures_ok(self, batch: Batch) -> bool:
        return first_bad_client_signature(self.crypto.verifier.verify, batch, self._client) < 0

    # ------------------------------------------------------------------ SUPPORT

    def support(self, k: int, slot: Slot, out: list[Action]) -> None:
        """SUPPORT(v, k, h): a threshold share to the primary (TS) or a vote to all (MAC)."""
        if self.abstaining():
            return
        if self.ts:
            share = self.crypto.threshold_signer.share_sign(
                support_statement(self.view, k, slot.digest))
            slot.own_support = codec.encode_support(self.id, self.view, k, slot.digest, share)
        else:
            slot.own_support = codec.encode_support(self.id, self.view, k, slot.digest)
            self.window.vote(k, SUPPORT_VOTES, self.id)
        # Q_k of a VC-REQUEST (§3.4), and the body a FETCH may ask us for in any view (§4.11)
        self.evidence.support(k, self.view, slot.digest, slot.batch)
        # the vote, before it leaves, with its batch (a body by (k, digest), §4.11)
        out.append(Persist(("support", self.view, k, slot.digest, slot.batch)))
        self._send_support(k, slot, out)

    def _send_support(self, k: int, slot: Slot, out: list[Action], to: int = -1) -> None:
        if to >= 0:
            out.append(Send(to, self._sealed_for(slot.own_support, to)))
        elif self.ts:
            out.append(Send(self.primary, self._sealed_for(slot.own_support, self.primary)))
        else:
            self._send_others(slot.own_support, out)

    def on_support(self, m: codec.Support, now: float) -> list[Action]:
        v, k = m.view, m.seq
        if v != self.view or self.status != NORMAL:
            self.drops["support-wrong-view"] += 1
            return self._serve_new_view(m, now) if v < self.view else []
        self._heard.add(m.sender)
        if not self.window.contains(k):
            if self._stash_ahead(m, k):
                return []
            return self._drop("support-outside-window")
        if self.ts:
            return self._on_support_share(m, k, now)
        return self._on_support_vote(m, k, now)

    def _on_support_share(self, m: codec.Support, k: int, now: float) -> list[Action]:
        """Primary, TS mode: collect nf shares, combine optimistically, CERTIFY (§2.5)."""
        slot = self.window.payload(k)
        if not self.is_primary or slot is None or slot.shares is None \
                or slot.prop_view != self.view:
            return self._drop("support-not-proposed")
        if m.digest != slot.digest:
            return self._drop("support-wrong-digest")
        sender = m.sender
        if sender in slot.shares or sender in slot.bad:
            return self._drop("support-duplicate")
        if slot.cert_view == self.view:
            return self._drop("support-late")        # only the first nf shares are used
        slot.shares[sender] = m.share
        out: list[Action] = []
        if len(slot.shares) >= self.nf:
            self._certify_slot(k, slot, now, out)
        return out

    def _certify_slot(self, k: int, slot: Slot, now: float, out: list[Action]) -> None:
        statement = support_statement(self.view, k, slot.digest)
        try:
            cert = self.crypto.threshold.combine(slot.shares, statement)
        except CombineError as exc:
            for bad in exc.bad_signers:
                slot.shares.pop(bad, None)
                slot.bad.add(bad)
                self.drops["support-bad-share"] += 1
            return
        self.certify(k, slot, cert, now, out)

    def certify(self, k: int, slot: Slot, cert: Certificate, now: float,
                out: list[Action]) -> None:
        """CERTIFY(v, k, h, sigma) to all (a MAC per receiver: suspicion must be earned,
        §4.12) and process it locally."""
        frame = codec.encode_certify(self.id, self.view, k, slot.digest, cert.bitmap,
                                     cert.signature, codec.AUTH_MAC)
        self._send_others(frame, out)
        self.stats["certified"] += 1
        self._record_cert(k, slot, self.view, slot.digest, cert)
        if slot.batch is not None:
            slot.committed = True
        else:
            self._fetch(k, slot.digest, self._holders(k, slot.digest, cert), now, out)
        self._progress(now, out)

    def _on_support_vote(self, m: codec.Support, k: int, now: float) -> list[Action]:
        """MAC mode: all-to-all SUPPORT; nf matching (own and PROPOSE included) commit."""
        slot = self._slot(k, now)
        if slot.digest is None:
            early = slot.early
            if early is None:
                early = slot.early = {}
            if m.sender in early:
                return self._drop("support-duplicate")
            early[m.sender] = m.digest      # at most one per replica: bounded by n
            if self._backed(slot, m.digest):
                # f+1 SUPPORTs: a correct replica accepted a PROPOSE for k, so k is owed
                # (one early vote of a faulty replica is not progress owed, §4.12)
                self.max_seen = max(self.max_seen, k)
            return []
        if self.window.has_voted(k, SUPPORT_VOTES, m.sender):
            return self._drop("support-duplicate")      # counted once, like the early ones
        count = self.window.vote_if_match(k, SUPPORT_VOTES, m.sender, m.digest)
        if count < 0:
            return self._drop("support-wrong-digest")
        out: list[Action] = []
        if self._check_mac_commit(k, slot):
            self._progress(now, out)
        return out

    def _check_mac_commit(self, k: int, slot: Slot) -> bool:
        if not slot.committed and slot.batch is not None \
                and self.window.count(k, SUPPORT_VOTES) >= self.nf:
            slot.committed = True
            slot.cert_view, slot.cert_digest = self.view, slot.digest
            self.evidence.prepared(k, self.view, slot.digest, slot.batch)   # P_k (§3.4)
            return True
        return False

    # ------------------------------------------------------------------ CERTIFY

    def on_certify(self, m: codec.Certify, now: float) -> list[Action]:
        """View-commit on a valid certificate (§2.7); fetch the batch if we lack it."""
        v, k = m.view, m.seq
        if not self.ts:
            return self._drop("certify-in-mac-mode")
        if v != self.view or self.status != NORMAL:
            return self._drop("certify-wrong-view")
        if m.sender != self.primary:
            # only the primary certifies; a body with another replica's certificate comes
            # by FETCH-REPLY, which we asked for (no pairing for a frame nobody owed us)
            return self._drop("certify-not-primary")
        if not self.window.contains(k):
            if self._stash_ahead(m, k):
                return []
            return self._drop("certify-outside-window")
        slot = self._slot(k, now)
        if slot.cert_view == v:
            return self._drop("certify-duplicate")   # checked once: no pairing per copy
        if popcount(m.bitmap) < self.nf:
            return self._drop("certify-too-few-signers")
        cert = Certificate(m.bitmap, m.signature)
        out: list[Action] = []
        if not self.crypto.threshold.verify_cert(cert, support_statement(v, k, m.digest)):
            # MAC-authenticated as the primary's (checked on arrival): its own misbehaviour
            self._drop("certify-invalid")
            self.suspect("invalid-certify", now, out)
            return out
        self._record_cert(k, slot, v, m.digest, cert)
        self.max_seen = max(self.max_seen, k)
        if slot.batch is not None and slot.digest == m.digest:
            slot.committed = True
            self._progress(now, out)
        else:
            # no PROPOSE, or a different one (the primary equivocated): ask the signers
            self.stats["fetch-for-certificate"] += 1
            self._fetch(k, m.digest, self._holders(k, m.digest, cert), now, out)
        self._arm_tick(now, out)
        return out

    def _record_cert(self, k: int, slot: Slot, view: int, digest: bytes,
                     cert: Certificate) -> None:
        if view > slot.cert_view:
            slot.cert_view, slot.cert_digest, slot.cert = view, digest, cert
        self.evidence.certificate(k, view, digest, cert,
                                  slot.batch if slot.digest == digest else None)

    # ------------------------------------------------------------------ FETCH

    def _holders(self, k: int, digest: bytes, cert: Certificate) -> list[int]:
        """Replicas that accepted a proposal with ``digest`` at k: the certificate's signers,
        and, for a position of the new view's history, the signers of the older certificate
        it was chosen by (re-certification supports by digest, without the body)."""
        holders = list(cert.signers())
        entry = self.history.entries.get(k) if self.history is not None else None
        if entry is not None and entry.digest == digest and entry.cert is not None:
            holders += [r for r in entry.cert.signers() if r not in holders]
        return holders

    def _fetch(self, k: int, digest: bytes, targets, now: float, out: list[Action]) -> None:
        """FETCH(k, digest) from ``targets`` (and the primary). The digest is remembered in
        the slot: a reply binds only a body that hashes to a digest we asked for (§4.11)."""
        slot = self._slot(k, now)
        slot.fetched_at = now
        wanted = slot.wanted
        if wanted is None:
            wanted = slot.wanted = set()
        if digest not in wanted:
            if len(wanted) >= FETCH_WANTED_MAX:
                wanted.clear()
            wanted.add(digest)
        frame = codec.encode_fetch(self.id, k, digest)
        sent = set()
        for r in [self.primary, *targets]:
            if r != self.id and r not in sent and 0 <= r < self.n:
                sent.add(r)
                out.append(Send(r, self._sealed_for(frame, r)))

    def on_fetch(self, m: codec.Fetch, now: float) -> list[Action]:
        """Answer with the body we hold for (k, digest) in any view (§4.11), with our
        certificate for it (TS) or our SUPPORT of this view (MAC); at most once per
        retransmission timeout per (requester, k, digest) (§4.13)."""
        k = m.seq
        if not self.window.contains(k):
            if k <= self.window.low:
                # the sender is behind our stable checkpoint and may have lost the
                # CHECKPOINTs that prove it (a restart): ours helps it to nf, then to a
                # state transfer
                return self._offer_checkpoint(self.window.low, m.sender, now,
                                              "fetch-outside-window")
            return self._drop("fetch-outside-window")
        slot = self.window.payload(k)
        want = m.digest
        batch = digest = None
        if slot is not None and slot.batch is not None \
                and (want == ZERO_DIGEST or want == slot.digest):
            batch, digest = slot.batch, slot.digest
        elif want != ZERO_DIGEST:
            batch, digest = self._body_for(k, want), want
        if batch is None:
            return self._drop("fetch-unknown")
        if not self._once_per_timeout(self._fetch_served, (m.sender, k, digest), now):
            return self._drop("fetch-too-frequent")
        if len(self._fetch_served) > 4 * self.n * self.config.window:
            self._fetch_served.clear()
        out: list[Action] = []
        current = slot is not None and slot.digest == digest and slot.prop_view == self.view
        if current and self.is_primary and slot.proposal is not None:
            # our PROPOSE was lost on the way: send it again (it is also our SUPPORT in MAC
            # mode, and lets the requester support it itself)
            out.append(Send(m.sender, self._sealed_for(slot.proposal, m.sender)))
        cert_view, cert = -1, None
        if slot is not None and slot.cert is not None and slot.cert_digest == digest:
            cert_view, cert = slot.cert_view, slot.cert
        held = self.evidence.get(k)
        if held is not None and held.cert is not None and held.cert_digest == digest \
                and held.cert_view > cert_view:
            cert_view, cert = held.cert_view, held.cert
        if cert is not None:
            frame = codec.encode_fetch_reply(self.id, k, digest, batch, cert_view,
                                             cert.bitmap, cert.signature)
        else:
            frame = codec.encode_fetch_reply(self.id, k, digest, batch)
        out.append(Send(m.sender, self._sealed_for(frame, m.sender)))
        if current and not self.ts and slot.own_support is not None:
            self._send_support(k, slot, out, to=m.sender)
        self.stats["fetch-served"] += 1
        return out

    def _body_for(self, k: int, digest: bytes):
        """The body of (k, digest) from the evidence log: kept in any view (§4.11)."""
        return self.evidence.body_for(k, digest)

    def on_fetch_reply(self, m: codec.FetchReply, now: float) -> list[Action]:
        """Adopt a fetched batch that hashes to a digest we asked for (§2.7 step 3, §4.11)."""
        k = m.seq
        recertifying = self.history is not None and self.h_next <= k <= self.k_exec
        if self.status != NORMAL or not self.window.contains(k) \
                or (k <= self.k_exec and not recertifying):
            return self._drop("fetch-reply-unneeded")
        slot = self.window.payload(k)
        wanted = slot.wanted if slot is not None else None
        # a reply carrying a certificate of this view proves its digest itself (it is a
        # CERTIFY with the body); anything else binds only a digest we asked for (§4.11):
        # for "whatever you hold", TS needs that certificate, MAC a digest f+1 replicas
        # SUPPORTed (one correct replica accepted its PROPOSE)
        certified = self.ts and m.bitmap and m.cert_view == self.view \
            and (slot is None or slot.cert_view < self.view)
        if not certified and (wanted is None or m.digest not in wanted and (
                ZERO_DIGEST not in wanted or not self.ts and not self._backed(slot, m.digest))):
            return self._drop("fetch-reply-unsolicited")
        slot = self._slot(k, now)
        if slot.committed and slot.batch is not None and slot.digest == slot.cert_digest:
            return self._drop("fetch-reply-unneeded")
        batch = m.batch
        if batch_digest(batch) != m.digest:
            return self._drop("fetch-reply-wrong-digest")
        out: list[Action] = []
        if self.ts:
            if m.bitmap and (slot.cert_view < self.view) and m.cert_view == self.view:
                cert = Certificate(m.bitmap, m.signature)
                if popcount(m.bitmap) < self.nf or not self.crypto.threshold.verify_cert(
                        cert, support_statement(self.view, k, m.digest)):
                    return self._drop("fetch-reply-invalid-certificate")
                self._record_cert(k, slot, self.view, m.digest, cert)
            if slot.prop_view == self.view and slot.digest == m.digest and slot.batch is None:
                # the body of the digest this view fixed for k (e.g. by the NV-PROPOSE)
                slot.batch = batch
                self.evidence.body(k, m.digest, batch)
            if slot.cert_view != self.view or slot.cert_digest != m.digest:
                if slot.batch is not None and slot.digest == m.digest:
                    self.stats["fetch-adopted"] += 1
                    return out
                return self._drop("fetch-reply-uncertified")
            # certified: nf replicas (f+1 correct) checked its client signatures
            slot.batch, slot.digest = batch, m.digest
            self.evidence.body(k, m.digest, batch)
            slot.committed = True
        else:
            if slot.digest is not None and slot.digest != m.digest:
                return self._drop("fetch-reply-wrong-digest")
            if slot.batch is None:
                if not self._client_signatures_ok(batch):
                    return self._drop("fetch-reply-bad-client-signature")
                slot.batch, slot.digest = batch, m.digest
                self.evidence.body(k, m.digest, batch)
                self.window.set_digest(k, m.digest)
                if slot.early:
                    for sender, digest in slot.early.items():
                        if digest == m.digest:
                            self.window.vote(k, SUPPORT_VOTES, sender)
                    slot.early = None
            self._check_mac_commit(k, slot)
        self.stats["fetch-adopted"] += 1
        self._progress(now, out)
        if self.max_seen > self.k_exec:
            self._fetch_missing(now, out)          # keep the catch-up pipeline full
        return out

    def _backed(self, slot: Slot, digest: bytes) -> bool:
        """f+1 replicas SUPPORTed ``digest`` at this slot (early votes, MAC mode)."""
        early = slot.early
        return early is not None and sum(1 for d in early.values() if d == digest) > self.f

    # ------------------------------------------------------------------ execute and INFORM

    def _progress(self, now: float, out: list[Action]) -> None:
        """Something may have been committed: advance re-certification or execution."""
        if self.history is not None:
            self._advance_recertified(now, out)
        else:
            self._try_execute(now, out)

    def _try_execute(self, now: float, out: list[Action]) -> None:
        """Execute view-committed batches strictly in order (§2.8)."""
        if self.status != NORMAL or self.diverged:
            return                  # §4.2 / §4.6 step 1: nothing executes, nothing INFORMs
        window = self.window
        history = self.history
        while True:
            k = self.k_exec + 1
            if not window.contains(k):
                break
            if history is not None and k >= self.h_next:
                break       # §4.6 step 5: every earlier position needs a new-view certificate
            slot = window.payload(k)
            if slot is None or not slot.committed or slot.digest != slot.cert_digest:
                break
            if slot.batch is None and slot.digest != NOOP_DIGEST:
                break
            if not self._may_execute(k, slot):
                break
            # §4.6 step 5: in view v only under view-v certificates for the whole prefix
            assert slot.cert_view == self.view and (history is None or k < self.h_next), \
                f"§4.6 step 5: executing {k} in view {self.view} without its certificate"
            self.execute(k, slot, out)
            self.pacemaker.executed(now - slot.seen_at)
            self.last_progress = now
            self.vc_attempts = 0                 # progress in this view: reset T_nv backoff

    def _may_execute(self, k: int, slot: Slot) -> bool:
        """PoE executes as soon as k is view-committed (speculatively, §2.8); the PBFT
        baseline overrides this to wait for its COMMIT quorum."""
        return True

    def restored_executed(self, k: int) -> None:
        """Recovery (``poe.storage.restore``): the store says we executed position k in the
        current view before a crash, and its slot is view-committed again. PoE needs nothing
        more to execute it again; the PBFT baseline records it as committed-local."""

    def execute(self, k: int, slot: Slot, out: list[Action]) -> None:
        """Speculatively execute batch k, append B_k, INFORM every client (§2.8, §6.4)."""
        batch = slot.batch
        if batch is None:                         # a no-op position (MAC view change)
            results = self.kv.execute_noop(k)
        else:
            results = self.kv.execute(k, batch)
        prev = self.head
        self.head = block_hash(k, slot.digest, prev)
        self.block_hashes[k] = self.head
        self.k_exec = k
        slot.executed = True
        slot.results = results
        self._retain(k, slot.digest, batch, slot.cert_view)
        nops = batch.nops if batch is not None else 0
        out.append(Executed(k, slot.cert_view, slot.digest, self.head, nops, batch, results,
                            prev))
        self.stats["executed-batches"] += 1
        self.stats["executed-requests"] += nops
        if batch is not None:
            self.inform(k, slot, results, out)
        if k % self.config.checkpoint_period == 0:
            self._snapshot_checkpoint(k)          # for peers that fall behind (§5.5)
            self.checkpoint(k, out)
        if self.behind is not None and self.behind.seq == k:
            self.stabilize(self.behind, out)      # caught up with a stable checkpoint

    def inform(self, k: int, slot: Slot, results, out: list[Action]) -> None:
        """One INFORM(v, k, c, entries) per client of the batch, one MAC: an entry (idx,
        results) for each of its messages (§2.8; PROTOCOL.md message table, docs/wire.md).
        Every message of the client it covers is cached under that one frame."""
        batch = slot.batch
        view = self.view
        pending = self.pending
        forwarded = self.forwarded
        groups: dict[int, list] = {}   # client -> [(key, piece, signature, reused id)]
        resent: set[int] = set()
        for i in range(len(batch)):
            cid = batch.client(i)
            key = (cid, batch.first_request_id(i))
            pending.discard(key)
            if forwarded:
                self.watch.executed(key)
            signature = batch.signature(i)
            reused = False
            cached = self.replies.get(key)
            if cached is not None and cached[1] < k \
                    and ReplyCache.same_message(cached, signature):
                # executed before, at cached[1] (on our prefix: a rollback drops the answers
                # above it): its original answer, once, whatever the kv says now --
                # DUPLICATE, or STALE once its client's later ids slid the exactly-once
                # window past it. A STALE entry would tell the client that a message which
                # ran never did (§2.8, §10 row 7), and overwrite the true answer here
                if id(cached[2]) not in resent:
                    resent.add(id(cached[2]))
                    out.append(Reply(cid, cached[2]))
                continue
            if results.all_duplicate(i):
                # executed before, its answer gone (or a message repeated inside this
                # batch: covered by its first occurrence's entry, not cached yet)
                if cached is None or ReplyCache.same_message(cached, signature):
                    continue
                # another message under an answered id: its own DUPLICATE results (the
                # answer of the message it collides with stays cached for that one)
                self.stats["inform-duplicate-of-other-message"] += 1
                reused = True
            entry = (key, results.message_results(i), bytes(signature), reused)
            group = groups.get(cid)
            if group is None:
                groups[cid] = [entry]
            else:
                group.append(entry)
        cached_now: set = set()
        for cid, entries in groups.items():
            for sealed in self.seal_informs(cid, view, k, entries, cached_now):
                out.append(Reply(cid, sealed))

    def seal_informs(self, cid: int, view: int, k: int, entries: list, done: set) -> list:
        """Client ``cid``'s sealed INFORM frames for batch k (view ``view``) from its
        entries (key, kv results piece, the message's signature or None if unknown, reused
        id), in batch order, split as ``inform_frames`` says; each entry's tag is the
        signature's first bytes (a client never counts another message's answer as its
        own; zeros if unknown). Every message is cached under its frame: the first under a
        key (``done`` holds the keys cached so far; a faulty primary may batch two under
        one key: neither overwrites the other's binding), one that reused an answered id
        kept apart (``put_other``). Also what a restart rebuilds the cache with."""
        macs = self._macs
        replies = self.replies
        zero = bytes(codec.INFORM_TAG_SIZE)
        frames = []
        for frame_entries in inform_frames(entries):
            frame = codec.encode_inform_results(
                self.id, view, k, [e[1] for e in frame_entries],
                [zero if e[2] is None else e[2][:codec.INFORM_TAG_SIZE] for e in frame_entries])
            sealed = frame + macs.mac(self._client(cid), frame)
            for key, _, signature, reused in frame_entries:
                if reused:
                    replies.put_other(key, view, k, sealed, signature)
                elif key not in done:
                    done.add(key)
                    replies.put(key, view, k, sealed, signature)
            frames.append(sealed)
        return frames

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, k: int, out: list[Action]) -> None:
        """Signed CHECKPOINT(k, d_state, d_chain) to all, only in the normal case (§5.1)."""
        if self.abstaining():
            return
        state = self.kv.state_digest()
        frame, signature = self._signed_checkpoint(k, state, self.head)
        self.own_checkpoint = frame
        self.own_checkpoints[k] = frame
        for old in [j for j in self.own_checkpoints if j < self.checkpoints.stable.seq]:
            del self.own_checkpoints[old]
        out.append(Persist(("checkpoint", k, state, self.head)))
        self._send_others(frame, out)
        self._count_checkpoint(k, state, self.head, self.id, signature, out)

    def _signed_checkpoint(self, k: int, state: bytes, chain: bytes) -> tuple[bytes, bytes]:
        """(frame, signature) of our CHECKPOINT(k, d_state, d_chain): signed (a transferable
        proof) and MAC-sealed per receiver (§4.12)."""
        signature = self.crypto.signer.sign(checkpoint_statement(k, state, chain))
        return codec.encode_checkpoint(self.id, k, state, chain, signature,
                                       codec.AUTH_MAC), signature

    def keep_checkpoint_vote(self, proof: codec.CheckpointProof) -> None:
        """Our CHECKPOINT vote for a stable checkpoint whose state we adopted without
        executing up to it (a snapshot transfer, a restart from the store): we hold exactly
        that state (the snapshot hashes to the nf-signed digest), so the vote is true. A
        peer that executed it and lacks the nf-th vote gets it when it re-sends its own
        (``_offer_checkpoint``); else its answers to clients stay non-final until a later
        checkpoint (swarm seed 9012 with an idle client)."""
        frame, _ = self._signed_checkpoint(proof.seq, proof.state_digest, proof.chain_digest)
        self.own_checkpoint = frame
        self.own_checkpoints = {proof.seq: frame}

    def on_checkpoint(self, m: codec.Checkpoint, now: float) -> list[Action]:
        k = m.seq
        if k % self.config.checkpoint_period:
            return self._drop("checkpoint-not-a-checkpoint")
        if k <= self.window.low:
            # stable here, not yet at the sender
            return self._offer_checkpoint(k, m.sender, now, "checkpoint-old")
        # cheap checks before the signature (§4.13): a vote we hold, a far one not newer
        if k > self.window.high:
            held = self._far.get(m.sender)
            if held is not None and held[0] >= k:
                return self._drop("checkpoint-far-not-newer")
        elif self.checkpoints.voted(k, m.sender):
            return self._drop("checkpoint-duplicate")
        if not self.crypto.verifier.verify(
                self._replicas[m.sender],
                checkpoint_statement(k, m.state_digest, m.chain_digest), m.signature):
            return self._drop("checkpoint-bad-signature")
        out: list[Action] = []
        if k > self.window.high:
            # far ahead of us: nf of these are a stable checkpoint to transfer to (§5.5)
            self.far_checkpoint(k, m.state_digest, m.chain_digest, m.sender, m.signature,
                                now, out)
            return out
        self._count_checkpoint(k, m.state_digest, m.chain_digest, m.sender, m.signature, out)
        return out

    def _count_checkpoint(self, k: int, state: bytes, chain: bytes, sender: int,
                          signature: bytes, out: list[Action]) -> None:
        result = self.checkpoints.add(k, state, chain, sender, signature)
        if isinstance(result, str):
            self.drops[result] += 1
        elif result is not None:
            self.stabilize(result, out)

    def stabilize(self, proof: codec.CheckpointProof, out: list[Action]) -> None:
        """A checkpoint is stable: speculation up to it is final (§5.3, §5.4)."""
        k = proof.seq
        if k > self.k_exec:
            # nf replicas are ahead of us: state transfer catches us up (§5.5)
            self.behind = proof
            self.max_seen = max(self.max_seen, k)
            self.stats["behind-stable-checkpoint"] += 1
            self.need_state(proof, self.now, out)
            return
        if self.block_hashes.get(k) != proof.chain_digest:
            # nf replicas executed another prefix than ours: stop executing and informing
            # on it at once, and take theirs (the snapshot discards our suffix)
            self.drops["checkpoint-chain-mismatch"] += 1
            self.diverged = True
            self.behind = proof
            self.need_state(proof, self.now, out)
            return
        if self.transfer is not None and self.transfer.seq <= k:
            self.transfer = None                 # caught up by executing
        self.checkpoints.make_stable(proof)
        self.window.advance(k)
        self.evidence.collect(k)                 # final: evidence at or below k is moot
        self.pacemaker.stable()                  # sustained progress: the timeout may decay
        self.kv.finalize(k)
        for old in [j for j in self.block_hashes if j < k]:
            del self.block_hashes[old]
        for old in [j for j in self.snapshots if j < k]:
            del self.snapshots[old]
        self.behind = None
        out.append(Stable(k, proof.state_digest, proof.chain_digest))
        self.stats["stable-checkpoints"] += 1
        self._offer_new_view(out)
        self._window_moved(self.now, out)

    def _offer_new_view(self, out: list[Action]) -> None:
        """As the primary of a view we installed by NV-PROPOSE: a replica that sent no
        SUPPORT of this view for a whole checkpoint interval may have missed the view change
        (it was deaf while it happened; nobody re-sends a finished one and it may have
        nothing to ask about). Send it our NV-PROPOSE, which proves itself: it installs the
        view instead of waiting, left out, for the next view change. At most once per
        interval and retransmission timeout per replica; a silent faulty replica costs one
        frame per interval (§4.13)."""
        heard, self._heard = self._heard, set()
        frame = self.nv_frame
        if frame is None or not self.is_primary or self.nv_sent != self.view \
                or self.status != NORMAL:
            return
        now = self.now
        for r in range(self.n):
            if r == self.id or r in heard \
                    or now - self._nv_served.get(r, -1e18) < self.config.retransmit_timeout_s:
                continue
            self._nv_served[r] = now
            self.stats["nv-propose-offered"] += 1
            out.append(Send(r, self._sealed_for(frame, r)))

    # ------------------------------------------------------------------ retransmission

    def _fetch_missing(self, now: float, out: list[Action]) -> None:
        """Ask for the batches (and certificates) of slots we know exist but cannot
        execute, up to FETCH_AHEAD at once; a slot is asked for at most once per timeout,
        and only once it has been missing for a timeout (the normal case fills it first)."""
        if self.transfer is not None:
            return                  # the slots below the transfer target are gone at peers
        timeout = self.config.retransmit_timeout_s
        window = self.window
        first = self.k_exec + 1
        last = self.max_seen
        if self.history is not None:
            # re-certification of the new view's history is incomplete: kept positions we
            # executed may still lack this view's certificate (TS) or SUPPORTs (MAC)
            first = min(first, max(self.h_next, window.low + 1))
            last = max(last, self.history.k_max)
        last = min(last, first + FETCH_AHEAD - 1, window.high)
        for k in range(first, last + 1):
            slot = self._slot(k, now)
            if slot.committed and slot.cert_view == self.view and slot.digest == slot.cert_digest \
                    and (slot.batch is not None or slot.digest == NOOP_DIGEST):
                continue
            if now - slot.seen_at < timeout or now - slot.fetched_at < timeout:
                continue
            self.stats["fetch-for-gap"] += 1
            # the digest we know k must hold; asked of every replica: any that holds the
            # body answers, in any view (§4.11)
            if slot.cert_view == self.view or slot.digest is None:
                want = slot.cert_digest or ZERO_DIGEST
            else:
                want = slot.digest
            self._fetch(k, want, range(self.n), now, out)

    def _tick(self, now: float) -> list[Action]:
        """Retransmit what peers may have lost; fetch what we may have missed."""
        out: list[Action] = []
        self._transfer_tick(now, out)
        if self.status != NORMAL:
            if self.own_vcs:
                for frame in self.own_vcs.values():    # our VC-REQUESTs may have been lost
                    out.append(Broadcast(frame))
                self.stats["vc-request-retransmitted"] += 1
                self._arm_tick(now, out)
            return out
        timeout = self.config.retransmit_timeout_s
        window = self.window
        if self.history is not None and self.is_primary and self.nv_frame is not None:
            # re-certification is incomplete: replicas may have missed the NV-PROPOSE
            self.stats["nv-propose-retransmitted"] += 1
            self._send_others(self.nv_frame, out)
        elif self.history is not None and not self.is_primary:
            self._recertify(now, out, only_missing=True)
        if self.is_primary:
            for k in range(self.k_exec + 1, self.next_k):
                if not window.contains(k):
                    continue
                slot = window.payload(k)
                if slot is None or slot.proposal is None or slot.committed \
                        or now - slot.proposed_at < timeout:
                    continue
                slot.proposed_at = now
                self.stats["propose-retransmitted"] += 1
                for r in range(self.n):
                    if r == self.id or (slot.shares is not None and r in slot.shares):
                        continue
                    if not self.ts and window.has_voted(k, SUPPORT_VOTES, r):
                        continue
                    out.append(Send(r, self._sealed_for(slot.proposal, r)))
        if self.max_seen > self.k_exec or self.history is not None:
            self._fetch_missing(now, out)
        checkpoint_unstable = self.own_checkpoint is not None and self.own_checkpoints \
            and max(self.own_checkpoints) > self.checkpoints.stable.seq
        if checkpoint_unstable:
            self._send_others(self.own_checkpoint, out)
        if self.k_exec < max(self.max_seen, self.next_k - 1) or self.ready \
                or self.open_messages or self.behind is not None or self.history is not None \
                or self.transfer is not None or checkpoint_unstable:
            self._arm_tick(now, out)
        return out
