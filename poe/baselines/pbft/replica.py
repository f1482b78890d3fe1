"""The PBFT baseline replica (PROTOCOL.md §9.1): PRE-PREPARE, PREPARE, COMMIT, in-order
execution after commit, REPLY; checkpoints; VIEW-CHANGE / NEW-VIEW.

What it is for: the paper's main comparison, run on exactly the fabric PoE runs on. PBFT
and PoE's MAC variant share their first two phases and their view change, so this class
is PoE's replica (MAC mode) with PBFT's own step added and its speculation removed:

==========================  =================================  ==========================
PBFT (Castro & Liskov)      here, on the wire                  shared code
==========================  =================================  ==========================
REQUEST (signed)            REQUEST                            client messages, batching
PRE-PREPARE(v, n, d) + B    PROPOSE(v, k, B)                   window, out of order
PREPARE(v, n, d, i)         SUPPORT(v, k, h), all-to-all       "prepared" = nf matching
COMMIT(v, n, d, i)          COMMIT(v, k, h), all-to-all        this module
execute when committed-     ``_may_execute``: nf COMMITs of    kv, in order; never
local, in order             this view for k                    speculative
REPLY(v, t, c, i, r)        INFORM; client takes f+1 matching  PBFTClient
CHECKPOINT, watermarks      CHECKPOINT                         checkpoint.py
VIEW-CHANGE(v+1, n, C, P)   VC-REQUEST with P_k (prepared)     view_change.py (§3.4 MAC
NEW-VIEW(v+1, V, O)         NV-PROPOSE, O recomputed by all    rules: PBFT with MACs)
==========================  =================================  ==========================

A slot's ``committed`` flag keeps its PoE meaning, "view-committed locally", which in PBFT
terms is *prepared*: that is what a VIEW-CHANGE reports as P. Committed-local is the
window's COMMIT vote count reaching nf (own included) for the slot's digest in the current
view. A position of a NEW-VIEW's history (a re-proposed request or a null request) is
prepared again in the new view and committed again before anything executes there.

What it must never do: execute a batch before nf matching COMMITs of the current view;
send a COMMIT for a slot it has not prepared in that view; count a COMMIT of another view,
another digest, or a replica twice; hold more than window x n early COMMITs.
"""
from __future__ import annotations

from poe._core import codec
from poe.protocol.actions import Action, Persist, Send
from poe.protocol.poe.replica import _AUTH, FETCH_AHEAD, NOOP_DIGEST, NORMAL, PoEReplica, Slot

__all__ = ["PBFTReplica", "COMMIT_VOTES"]

COMMIT_VOTES = 1               # window vote kind 1: COMMITs (kind 0: SUPPORT = PREPARE)


class PBFTReplica(PoEReplica):
    """One PBFT replica (``config.protocol == "pbft"``, ``config.mode == "mac"``)."""

    _auth = {**_AUTH, codec.COMMIT: (codec.AUTH_MAC,)}
    vote_kinds = 2

    def __init__(self, config, replica_id, crypto, kv=None) -> None:
        if config.protocol != "pbft" or config.mode != "mac":
            raise ValueError("PBFTReplica needs protocol 'pbft' with mode 'mac' "
                             f"(got protocol {config.protocol!r}, mode {config.mode!r})")
        super().__init__(config, replica_id, crypto, kv)
        self._prepared: list[int] = []             # prepared since the last flush: COMMIT
        self._own_commits: dict[int, tuple[int, bytes]] = {}   # k -> (view, frame)
        self._early_commits: dict[int, dict[int, tuple[int, bytes]]] = {}
        self._commit_served: dict[int, float] = {}  # replica -> when we last answered it
        # executed in (view, digest) before a crash, so committed-local then: k -> (v, h)
        self._restored: dict[int, tuple[int, bytes]] = {}

    # ------------------------------------------------------------------ prepared -> COMMIT

    def _check_mac_commit(self, k: int, slot: Slot) -> bool:
        """nf matching PREPAREs (PRE-PREPARE and own included): prepared; COMMIT follows."""
        if super()._check_mac_commit(k, slot):
            self._prepared.append(k)
            return True
        return False

    def _own_commit(self, k: int) -> bytes | None:
        """Our COMMIT frame for k in the current view, if we sent one."""
        held = self._own_commits.get(k)
        return held[1] if held is not None and held[0] == self.view else None

    def _count_early_commits(self, k: int, digest: bytes) -> None:
        """COMMITs that came before we held k's digest: count those of this view for it."""
        early = self._early_commits.pop(k, None)
        if early:
            for sender, (v, d) in early.items():
                if v == self.view and d == digest:
                    self.window.vote(k, COMMIT_VOTES, sender)

    def _flush_commits(self, out: list[Action]) -> None:
        """COMMIT(v, k, h) to all for every slot prepared since the last flush."""
        if not self._prepared or self.abstaining():
            self._prepared = []
            return
        prepared, self._prepared = self._prepared, []
        view = self.view
        window = self.window
        for k in prepared:
            if not window.contains(k) or self.status != NORMAL:
                continue
            slot = window.payload(k)
            if slot is None or not slot.committed or slot.cert_view != view:
                continue
            if self._own_commit(k) is not None:
                continue
            digest = slot.digest
            frame = codec.encode_commit(self.id, view, k, digest)
            self._own_commits[k] = (view, frame)
            # the vote, before it leaves, with its batch: after a power cut of the whole
            # cluster a prepared batch may exist nowhere else (a no-op has none)
            body = slot.batch.body() if slot.batch is not None else None
            out.append(Persist(("commit", view, k, digest, body)))
            self._send_others(frame, out)
            window.vote(k, COMMIT_VOTES, self.id)
            self._count_early_commits(k, digest)
            self.stats["commits-sent"] += 1

    def _progress(self, now: float, out: list[Action]) -> None:
        self._flush_commits(out)
        super()._progress(now, out)
        self._flush_commits(out)

    def _advance_recertified(self, now: float, out: list[Action]) -> None:
        """A null request of the new view's history is prepared by the NEW-VIEW itself
        (every replica recomputes it from nf VIEW-CHANGEs); it is committed like any
        other position before it executes."""
        history = self.history
        if history is not None and self.status == NORMAL:
            window = self.window
            for k in range(max(self.h_next, window.low + 1),
                           min(history.k_max, window.high) + 1):
                slot = window.payload(k)
                if slot is not None and slot.digest == NOOP_DIGEST and slot.prop_view == self.view \
                        and not slot.committed:
                    slot.committed = True
                    slot.cert_view, slot.cert_digest = self.view, NOOP_DIGEST
                    self.evidence.prepared(k, self.view, NOOP_DIGEST)   # P (§4.11)
                    self._prepared.append(k)
            self._flush_commits(out)
        super()._advance_recertified(now, out)

    # ------------------------------------------------------------------ COMMIT in

    def on_view_change_message(self, m, now: float) -> list[Action]:
        if m.kind == codec.COMMIT:
            return self.on_commit(m, now)
        return super().on_view_change_message(m, now)

    def on_commit(self, m, now: float) -> list[Action]:
        v, k = m.view, m.seq
        if v != self.view or self.status != NORMAL:
            return self._drop("commit-wrong-view")
        window = self.window
        if k <= window.low or k <= self.k_exec:
            # committed and executed here: the sender may lack our COMMIT (it rebroadcasts
            # its own while it waits); answer once per retransmission timeout
            self.drops["commit-old"] += 1
            frame = self._own_commit(k)
            if frame is None or not self._once_per_timeout(self._commit_served, m.sender, now):
                return []
            return [Send(m.sender, self._sealed_for(frame, m.sender))]
        if not window.contains(k):
            if self._stash_ahead(m, k):
                return []
            return self._drop("commit-outside-window")
        if window.digest(k) is None:
            early = self._early_commits.get(k)
            if early is None:
                early = self._early_commits[k] = {}
            if m.sender in early:
                return self._drop("commit-duplicate")
            early[m.sender] = (v, m.digest)        # at most one per replica and slot
            return []
        if window.has_voted(k, COMMIT_VOTES, m.sender):
            return self._drop("commit-duplicate")
        if window.vote_if_match(k, COMMIT_VOTES, m.sender, m.digest) < 0:
            return self._drop("commit-wrong-digest")
        out: list[Action] = []
        if k == self.k_exec + 1:
            self._progress(now, out)
        return out

    def _handle_kept(self, m, now: float) -> list[Action]:
        if m.kind == codec.COMMIT:
            return self.on_commit(m, now)
        return super()._handle_kept(m, now)

    # ------------------------------------------------------------------ execution

    def restore_commit_votes(self, commits: dict[int, bytes], now: float,
                             batches=None) -> None:
        """Recovery: our durable COMMITs of the current view above what we executed. Each
        says the slot was prepared here (nf matching PREPAREs of this view): it is prepared
        again (P in a VIEW-CHANGE), with our COMMIT counted and sent again, and with its
        batch (``batches``: (seq, digest) -> Batch, stored with the vote)."""
        batches = batches or {}
        view = self.view
        window = self.window
        for k, digest in sorted(commits.items()):
            if k <= self.k_exec or not window.contains(k):
                continue
            slot = self._slot(k, now)
            if slot.digest is not None and slot.digest != digest:
                continue                 # our restored PREPARE says otherwise: keep it
            slot.digest = digest
            if slot.batch is None:
                slot.batch = batches.get((k, digest))
            slot.committed = True
            slot.cert_view, slot.cert_digest = view, digest
            self.evidence.prepared(k, view, digest, slot.batch)       # P (§4.11)
            window.set_digest(k, digest)
            self._own_commits[k] = (view, codec.encode_commit(self.id, view, k, digest))
            window.vote(k, COMMIT_VOTES, self.id)

    def restored_executed(self, k: int) -> None:
        """We executed k in this view before a crash, so it was committed-local then (nf
        COMMITs of this view): it executes again after the restart without new COMMITs,
        which the peers, past k by now, would never send."""
        slot = self.window.payload(k)
        self._restored[k] = (self.view, slot.digest)

    def _may_execute(self, k: int, slot: Slot) -> bool:
        """Committed-local: prepared (checked by the caller) and nf COMMITs of this view,
        or executed in this view before a restart (``restored_executed``)."""
        if self._restored:
            if self._restored.pop(k, None) == (self.view, slot.digest):
                return True
            for j in [j for j in self._restored if j <= self.k_exec]:
                del self._restored[j]
        if self._early_commits:
            self._count_early_commits(k, slot.digest)
        return self.window.count(k, COMMIT_VOTES) >= self.nf

    def stabilize(self, proof, out: list[Action]) -> None:
        super().stabilize(proof, out)
        low = self.window.low
        for table in (self._own_commits, self._early_commits):
            for k in [j for j in table if j <= low]:
                del table[k]

    # ------------------------------------------------------------------ retransmission

    def _tick(self, now: float) -> list[Action]:
        out = super()._tick(now)
        self._flush_commits(out)
        if self.status != NORMAL:
            return out
        # prepared but not committed-local for a timeout: COMMITs were lost; our own
        # COMMIT again to all (peers that executed k answer with theirs)
        timeout = self.config.retransmit_timeout_s
        window = self.window
        last = min(self.max_seen, self.k_exec + FETCH_AHEAD, window.high)
        stuck = False
        for k in range(self.k_exec + 1, last + 1):
            slot = window.payload(k)
            if slot is None:
                continue
            frame = self._own_commit(k)
            if frame is None and slot.committed \
                    and slot.cert_view == self.view and slot.digest == slot.cert_digest:
                # prepared without our COMMIT of this view (restored from the store after
                # a restart): send it now
                self._prepared.append(k)
                self._flush_commits(out)
                slot.fetched_at = now               # just sent: no retransmission yet
                stuck = True
                continue
            if frame is None or window.count(k, COMMIT_VOTES) >= self.nf:
                continue
            stuck = True
            if now - slot.fetched_at < timeout or now - slot.seen_at < timeout:
                continue
            slot.fetched_at = now
            self.stats["commit-retransmitted"] += 1
            self._send_others(frame, out)
        if stuck:
            self._arm_tick(now, out)
        return out

    def on_fetch(self, m, now: float) -> list[Action]:
        out = super().on_fetch(m, now)
        frame = self._own_commit(m.seq)
        if out and frame is not None:
            out.append(Send(m.sender, self._sealed_for(frame, m.sender)))
        return out
