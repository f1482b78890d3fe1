"""The view change of PoE, pure parts (PROTOCOL.md §4 TS variant, §3.4 MAC variant).

What it is for: checking VC-REQUESTs (signature, checkpoint proof, certificates), and the
deterministic new-history computation every replica runs on an NV-PROPOSE: the highest
stable checkpoint in M, then per position the entry with the highest certificate view, cut
at the first gap (TS, §4.6); or PBFT's A1/A2 rule with no-ops (MAC, §3.4). The replica
(poe.protocol.poe.replica) applies the result: rollback, re-certification, re-execution.

What it must never do: trust a VC-REQUEST it has not verified, raise on peer input (checks
return a drop reason), or depend on anything but its arguments (every replica must compute
the same history from the same NV-PROPOSE).
"""
from __future__ import annotations

from dataclasses import dataclass

from poe._core import codec
from poe._core.codec import CheckpointProof, VcEntry, VcRequest
from poe.crypto.base import Certificate, CryptoSuite
from poe.crypto.base import replica as replica_party
from poe.crypto.statements import checkpoint_statement, support_statement, vc_request_statement
from poe.protocol.actions import Broadcast, CancelTimer, Persist, RolledBack, Send, SetTimer
from poe.protocol.pacemaker import RequestWatch
from poe.protocol.poe.evidence import SUPPORTED_PER_SEQ
from poe.protocol.quorum import popcount

Slot = object          # the replica's slot record (poe.protocol.poe.replica.Slot)

NOOP_DIGEST = b"\0" * 32       # MAC mode: position decided empty (§3.4)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """Position k of the new history: digest ``digest``, from a certificate of ``view``."""

    seq: int
    digest: bytes
    view: int
    cert: Certificate | None


@dataclass(frozen=True, slots=True)
class NewHistory:
    """What an NV-PROPOSE fixes: the checkpoint base and the positions above it."""

    base: CheckpointProof            # highest stable checkpoint among M
    entries: dict[int, HistoryEntry]  # k_c* < k <= k_max
    k_max: int


def checkpoint_proof_ok(proof: CheckpointProof, nf: int, n: int, crypto: CryptoSuite,
                        genesis: bytes) -> bool:
    """nf distinct valid CHECKPOINT signatures on (k, d_state, d_chain), or genesis (k = 0)."""
    if proof.seq == 0:
        return proof.chain_digest == genesis and not proof.signatures
    signers = set()
    statement = checkpoint_statement(proof.seq, proof.state_digest, proof.chain_digest)
    verify = crypto.verifier.verify
    for replica_id, signature in proof.signatures:
        if replica_id >= n or replica_id in signers:
            return False
        if not verify(replica_party(replica_id), statement, signature):
            return False
        signers.add(replica_id)
    return len(signers) >= nf


def check_vc_request(m: VcRequest, *, n: int, nf: int, window: int, ts: bool,
                     crypto: CryptoSuite, genesis: bytes) -> str | None:
    """None if ``m`` is a valid VC-REQUEST (§4.3), else the drop reason."""
    if m.auth_kind != codec.AUTH_SIG or m.sender >= n:
        return "vc-request-unauthenticated"
    if not crypto.verifier.verify(replica_party(m.sender), vc_request_statement(m.signed),
                                  m.auth):
        return "vc-request-bad-signature"
    proof = m.checkpoint
    if not checkpoint_proof_ok(proof, nf, n, crypto, genesis):
        return "vc-request-bad-checkpoint"
    low, high = proof.seq, proof.seq + window
    # §4.13: bounded per message — TS one certificate per position, MAC one P_k and at
    # most SUPPORTED_PER_SEQ digests of Q_k per position (what a correct replica reports)
    if len(m.entries) > window * (1 if ts else 1 + SUPPORTED_PER_SEQ):
        return "vc-request-too-many-entries"
    seen: set[int] = set()
    for e in m.entries:
        if not low < e.seq <= high or e.view > m.view:
            return "vc-request-entry-out-of-range"
        if (e.type == codec.ENTRY_CERT) != ts:
            return "vc-request-wrong-entry-type"
        if ts:
            if e.seq in seen:                  # one (the highest-view) certificate per slot
                return "vc-request-duplicate-entry"
            seen.add(e.seq)
            if popcount(e.bitmap) < nf or not crypto.threshold.verify_cert(
                    Certificate(e.bitmap, e.signature), support_statement(e.view, e.seq,
                                                                         e.digest)):
                return "vc-request-bad-certificate"
        elif e.bitmap or e.signature:
            return "vc-request-bad-entry"
    return None


def highest_checkpoint(requests) -> CheckpointProof:
    best = requests[0].checkpoint
    for r in requests[1:]:
        if r.checkpoint.seq > best.seq:
            best = r.checkpoint
    return best


def new_history_ts(requests) -> NewHistory:
    """§4.6: checkpoint base k_c*, then per position the highest-view certificate, up to
    the first position nobody certified."""
    base = highest_checkpoint(requests)
    best: dict[int, VcEntry] = {}
    for r in requests:
        for e in r.entries:
            if e.seq > base.seq:
                held = best.get(e.seq)
                if held is None or e.view > held.view:
                    best[e.seq] = e
    entries: dict[int, HistoryEntry] = {}
    k = base.seq + 1
    while k in best:
        e = best[k]
        entries[k] = HistoryEntry(k, e.digest, e.view, Certificate(e.bitmap, e.signature))
        k += 1
    return NewHistory(base, entries, k - 1)


def new_history_mac(requests, f: int, nf: int) -> NewHistory | None:
    """§3.4 (PBFT-MAC): per position pick (v', h) with A1 (nf requests report no P_k, an
    older one, or exactly (v', h)) and A2 (f+1 report supporting (>= v', h)); a position
    nobody view-committed and that nf report without P_k is a no-op. None when some
    position cannot be decided yet (the new primary waits for more VC-REQUESTs)."""
    base = highest_checkpoint(requests)
    prepared: list[dict[int, tuple[int, bytes]]] = []
    supported: list[dict[int, list[tuple[int, bytes]]]] = []
    top = base.seq
    for r in requests:
        p: dict[int, tuple[int, bytes]] = {}
        q: dict[int, list[tuple[int, bytes]]] = {}
        for e in r.entries:
            if e.seq <= base.seq:
                continue
            top = max(top, e.seq)
            if e.type == codec.ENTRY_PREPARED:
                if e.seq not in p or e.view > p[e.seq][0]:
                    p[e.seq] = (e.view, e.digest)
            elif e.type == codec.ENTRY_SUPPORTED:
                q.setdefault(e.seq, []).append((e.view, e.digest))
        prepared.append(p)
        supported.append(q)
    entries: dict[int, HistoryEntry] = {}
    empty: set[int] = set()              # decided empty here (nobody view-committed them)
    for k in range(base.seq + 1, top + 1):
        candidates = sorted({pk[k] for pk in prepared if k in pk}, reverse=True)
        chosen = None
        for view, digest in candidates:
            a1 = sum(1 for pk in prepared
                     if k not in pk or pk[k][0] < view or pk[k] == (view, digest))
            a2 = sum(1 for qk in supported
                     if any(w >= view and d == digest for w, d in qk.get(k, ())))
            if a1 >= nf and a2 >= f + 1:
                chosen = (view, digest)
                break
        if chosen is None:
            if sum(1 for pk in prepared if k not in pk) >= nf:
                entries[k] = HistoryEntry(k, NOOP_DIGEST, 0, None)
                empty.add(k)
                continue
            return None
        entries[k] = HistoryEntry(k, chosen[1], chosen[0], None)
    # trailing positions decided empty carry nothing: cut them so the new primary
    # continues right after. A no-op chosen from a P_k (view-committed in an earlier new
    # view, maybe executed, and under PBFT committed) stays: cutting it would roll it back
    # and give its position to another batch (PBFT swarm seed 136)
    k_max = top
    while k_max > base.seq and k_max in empty:
        del entries[k_max]
        k_max -= 1
    return NewHistory(base, entries, k_max)


# ============================================================================ the replica side

NORMAL = "normal"
VIEW_CHANGE = "view-change"
TIMER_PROGRESS = "progress"      # T_exec / T_req (§4.2)
TIMER_NEW_VIEW = "new-view"      # T_nv (§4.7)
BACKOFF_MAX = 16                 # T_nv doubles at most this many times
VC_KEPT_PER_SENDER = 4           # VC-REQUESTs kept per replica (views it asked to leave)


class ViewChangeMixin:
    """The view change of a PoEReplica (§4): detection, VC-REQUEST, NV-PROPOSE, the new
    history, rollback, re-certification under the new view and re-execution.

    Mixed into poe.protocol.poe.replica.PoEReplica; it uses that class's state (view,
    status, window, kv, slots, timers) and its normal-case steps (support, execute)."""

    def _init_view_change(self) -> None:
        self.vc_view = -1                       # the view we are leaving (VIEW_CHANGE only)
        # valid VC-REQUESTs by sender and by the view they leave (a few newest per sender)
        self.vc_requests: dict[int, dict[int, VcRequest]] = {}
        self.vc_attempts = 0                    # a in T_nv = tau * 2^a
        self.own_vcs: dict[int, bytes] = {}     # our VC-REQUESTs since the last new view
        self.nv_sent = -1                       # highest view we sent NV-PROPOSE for
        self.nv_frame: bytes | None = None      # our NV-PROPOSE (new primary), for retries
        self.history: NewHistory | None = None  # the history fixed for the current view
        self.h_next = 0                         # lowest position of it without a new cert
        self.progress_armed = False
        self.progress_mark = -1
        self.nv_armed_for = -1
        # T_req and "client unserved" (pacemaker.RequestWatch); forwarded: its table
        self.watch = RequestWatch(self.config.client_pending_max, self.config.forwarded_max)
        self.forwarded = self.watch.forwarded
        self._vc_verified: set[bytes] = set()   # VC-REQUEST frames already checked
        self._nv_served: dict[int, float] = {}  # replica -> when we last sent it our NV-PROPOSE
        self._reported: dict[int, int] = {}     # k -> highest evidence view we reported

    # ------------------------------------------------------------------ detection

    def _arm_progress(self, now: float, out: list) -> None:
        """T_exec / T_req: armed while something we accepted or forwarded is pending."""
        if not self.progress_armed and self.status == NORMAL:
            self.progress_armed = True
            self.progress_mark = self.k_exec + self.h_next   # execution or re-certification
            out.append(SetTimer(TIMER_PROGRESS, 0, now + self.pacemaker.timeout_s))

    def _on_progress_timeout(self, now: float) -> list:
        self.progress_armed = False
        out: list = []
        if self.status != NORMAL:
            return out
        expired = self.forwarded_expired(now)   # and drops what is no longer waited for
        waiting = self.forwarded or self.max_seen > self.k_exec or (
            self.history is not None and self.h_next <= self.history.k_max)
        if not waiting:
            return out
        if self.k_exec + self.h_next > self.progress_mark and not expired:
            self._arm_progress(now, out)        # progress was made: keep watching
            return out
        nxt = self.window.payload(self.k_exec + 1) if self.window.contains(self.k_exec + 1) \
            else None
        if nxt is not None and now - nxt.seen_at < self.pacemaker.timeout_s and not expired:
            self._arm_progress(now, out)        # what we wait for is younger than a timeout
            return out
        self.stats["suspect-timeout"] += 1
        self.pacemaker.fired()
        self.start_view_change(self.view, now, out)
        return out

    def forwarded_expired(self, now: float) -> bool:
        """T_req (§4.2): a message we forwarded has waited a timeout (RequestWatch)."""
        verdict = self.watch.expired(now, self.pacemaker.timeout_s)
        if verdict > 0:
            self.stats["forwarded-over-share"] += verdict
        return verdict < 0

    def suspect(self, reason: str, now: float, out: list) -> None:
        """Local evidence against the primary (equivocation, invalid CERTIFY): §4.2."""
        self.stats[f"suspect-{reason}"] += 1
        if self.status == NORMAL:
            self.start_view_change(self.view, now, out)

    # ------------------------------------------------------------------ VC-REQUEST

    def _vc_entries(self, leaving: int) -> list[VcEntry]:
        """E of a VC-REQUEST: the evidence we hold per position above our stable checkpoint,
        from any view (§4.11): TS the highest-view certificate, MAC P_k and Q_k."""
        low = self.checkpoints.stable.seq
        high = low + self.config.window
        entries = []
        by_seq = self.evidence.by_seq
        reported = self._reported
        for k in [k for k in reported if k <= low]:
            del reported[k]
        for k in sorted(by_seq):
            if not low < k <= high:
                continue
            e = by_seq[k]
            view = max(e.cert_view, e.p_view, max(e.supported.values(), default=-1))
            # §4.11: evidence is only superseded (higher view) or collected (stable
            # checkpoint): what we report for k never falls below what we reported before
            assert view >= reported.get(k, -1), \
                f"§4.11: evidence for {k} fell from view {reported.get(k)} to {view}"
            reported[k] = view
            if self.ts:
                if e.cert is not None and 0 <= e.cert_view <= leaving:
                    entries.append(VcEntry(codec.ENTRY_CERT, k, e.cert_view, e.cert_digest,
                                           e.cert.bitmap, e.cert.signature))
                continue
            if e.p_digest is not None and 0 <= e.p_view <= leaving:
                entries.append(VcEntry(codec.ENTRY_PREPARED, k, e.p_view, e.p_digest))
            for digest, view in e.supported.items():
                if view <= leaving:
                    entries.append(VcEntry(codec.ENTRY_SUPPORTED, k, view, digest))
        lost = [k for k in reported if k not in by_seq]
        assert not lost, f"§4.11: evidence for {lost} vanished before a stable checkpoint"
        return entries

    def start_view_change(self, leaving: int, now: float, out: list) -> None:
        """Stop the normal case of ``leaving`` (no more execution, INFORM or CHECKPOINT for
        it) and broadcast a signed VC-REQUEST(leaving, C, E) (§4.2, §4.3)."""
        if self.status == VIEW_CHANGE and self.vc_view >= leaving:
            return
        if leaving < self.view or self.abstaining():
            return
        if self.status == NORMAL:
            self.pacemaker.leaving_view(self.k_exec)   # no progress in it: wait longer (§4.12)
        self.status = VIEW_CHANGE
        self.vc_view = leaving
        self.stats["view-changes-started"] += 1
        # the primary's queued requests are dropped: their clients retry to everyone
        self.open_messages, self.open_ops = [], 0
        self.ready.clear()
        self.pending.clear()
        frame = codec.encode_vc_request(self.id, leaving, self.checkpoints.stable,
                                        self._vc_entries(leaving))
        sealed = codec.seal(frame, self.crypto.signer.sign(vc_request_statement(frame)))
        # keep the ones for views we left before too: a peer that missed them needs them to
        # reach nf for the same view (retransmitted on tick until a new view is installed)
        self.own_vcs[leaving] = sealed
        while len(self.own_vcs) > VC_KEPT_PER_SENDER:
            del self.own_vcs[min(self.own_vcs)]
        out.append(Persist(("view-change", leaving)))
        out.append(Broadcast(sealed))
        self._store_vc(self.id, codec.decode(sealed))
        self._vc_verified.add(sealed)
        self._arm_tick(now, out)                 # retransmits them until a new view
        self._vc_progress(now, out)

    def _store_vc(self, sender: int, m: VcRequest) -> None:
        held = self.vc_requests.setdefault(sender, {})
        held[m.view] = m
        while len(held) > VC_KEPT_PER_SENDER:
            del held[min(held)]

    def on_vc_request(self, m: VcRequest, now: float) -> list:
        if m.view < self.view:
            self.drops["vc-request-old"] += 1
            return self._serve_new_view(m, now)
        held = self.vc_requests.get(m.sender)
        if held is not None and (m.view in held or len(held) >= VC_KEPT_PER_SENDER
                                 and m.view < min(held)):
            return self._drop("vc-request-duplicate")
        reason = self._check_vc_once(m)
        if reason is not None:
            return self._drop(reason)
        self._store_vc(m.sender, m)
        out: list = []
        self.adopt_checkpoint_proof(m.checkpoint, now, out)
        # join rule (§4.2): f+1 replicas want to leave views >= ours: join the smallest
        # view among the f+1 highest requests (at least one correct replica wants it)
        current = self.vc_view if self.status == VIEW_CHANGE else self.view - 1
        wanted = sorted((max(held) for held in self.vc_requests.values()
                         if max(held) > current), reverse=True)
        if len(wanted) >= self.f + 1:
            self.stats["view-change-joined"] += 1
            self.start_view_change(wanted[self.f], now, out)
        else:
            self._vc_progress(now, out)
        return out

    def _serve_new_view(self, m, now: float) -> list:
        """A replica asks to leave a view older than ours, or still works in one (PROPOSE,
        SUPPORT, CERTIFY of it): it missed our view change (it was down, or restarted from a
        store that says an older view — e.g. an old primary). As the primary of our view,
        send it our NV-PROPOSE: it checks it like any other (nf signed VC-REQUESTs) and
        installs our view, instead of waiting for the next view change. At most once per
        retransmission timeout per replica; a VC-REQUEST must carry a valid signature (the
        other kinds were MAC-checked on arrival)."""
        frame = self.nv_frame
        if frame is None or self.nv_sent != self.view or not self.is_primary \
                or self.status != NORMAL:
            return []
        sender = m.sender
        if now - self._nv_served.get(sender, -1e18) < self.config.retransmit_timeout_s:
            return []
        if m.kind == codec.VC_REQUEST and not self.crypto.verifier.verify(
                replica_party(sender), vc_request_statement(m.signed), m.auth):
            return []
        self._nv_served[sender] = now          # at most n entries
        self.stats["nv-propose-served"] += 1
        return [Send(sender, self._sealed_for(frame, sender))]

    def adopt_checkpoint_proof(self, proof: CheckpointProof, now: float, out: list) -> None:
        """A verified nf-signed checkpoint (from a VC-REQUEST) above our stable one makes it
        stable here too, or tells us to transfer state (§5.5)."""
        if proof.seq > self.checkpoints.stable.seq:
            self.stats["checkpoint-proof-adopted"] += 1
            self.stabilize(proof, out)

    def _check_vc_once(self, m: VcRequest) -> str | None:
        """check_vc_request, remembering frames already verified (an NV-PROPOSE repeats the
        VC-REQUESTs we received; their certificates cost a pairing each)."""
        frame = bytes(m.frame)
        if frame in self._vc_verified:
            return None
        reason = check_vc_request(m, n=self.n, nf=self.nf, window=self.config.window,
                                  ts=self.ts, crypto=self.crypto, genesis=self.config.genesis)
        if reason is None:
            if len(self._vc_verified) > 4 * self.n:
                self._vc_verified.clear()
            self._vc_verified.add(frame)
        return reason

    def _vc_progress(self, now: float, out: list) -> None:
        """With nf VC-REQUESTs for the view we leave: arm T_nv; as the next primary, send
        NV-PROPOSE (§4.5, §4.7)."""
        if self.status != VIEW_CHANGE:
            return
        leaving = self.vc_view
        requests = [held[leaving] for held in self.vc_requests.values() if leaving in held]
        if len(requests) < self.nf:
            return
        if self.nv_armed_for != leaving:
            self.nv_armed_for = leaving
            delay = self.config.new_view_timeout_s * (1 << min(self.vc_attempts, BACKOFF_MAX))
            out.append(SetTimer(TIMER_NEW_VIEW, leaving, now + delay))
        new_view = leaving + 1
        if self.config.primary(new_view) != self.id or self.nv_sent >= new_view:
            return
        requests.sort(key=lambda r: r.sender)
        if self.ts:
            chosen = [r for r in requests if r.sender == self.id] + \
                     [r for r in requests if r.sender != self.id]
            chosen = chosen[:self.nf]
            history = new_history_ts(chosen)
        else:
            chosen = requests
            history = new_history_mac(chosen, self.f, self.nf)
            if history is None:
                self.stats["nv-propose-undecided"] += 1
                return                          # wait for more VC-REQUESTs (§3.4)
        self.nv_sent = new_view
        frames = [bytes(r.frame) for r in chosen]
        frame = codec.encode_nv_propose(self.id, new_view, frames)
        self.nv_frame = frame
        self.stats["nv-proposed"] += 1
        self._persist_new_view(new_view, self.id, frames, out)   # before it leaves (§4.11)
        self._send_others(frame, out)
        self.install_view(new_view, history, now, out)

    def on_new_view_timeout(self, leaving: int, now: float) -> list:
        out: list = []
        if self.status == VIEW_CHANGE and self.vc_view == leaving:
            # the next primary failed too: ask for the view after it (§4.4, §4.7)
            self.vc_attempts += 1
            self.stats["new-view-timeouts"] += 1
            self.start_view_change(leaving + 1, now, out)
        return out

    # ------------------------------------------------------------------ NV-PROPOSE

    def on_nv_propose(self, m, now: float) -> list:
        new_view = m.view
        if m.sender != self.config.primary(new_view):
            return self._drop("nv-propose-not-primary")
        if new_view < self.view or new_view == 0:
            return self._drop("nv-propose-old")
        if new_view == self.view:
            if self.status == NORMAL and self.history is not None:
                # the new primary retransmits: our re-certification SUPPORTs were lost
                out: list = []
                self._recertify(now, out, only_missing=True)
                return out
            return self._drop("nv-propose-old")
        if self.status == VIEW_CHANGE and self.vc_view >= new_view:
            # we already asked to leave new_view: our VC-REQUEST for it may be in the next
            # NV-PROPOSE, so we must not execute in it now (§4.2, Lemma 3 of §7)
            return self._drop("nv-propose-view-already-left")
        leaving = new_view - 1
        senders = set()
        requests = []
        for r in m.requests:
            if r.view != leaving or r.sender in senders or r.sender >= self.n:
                return self._drop("nv-propose-bad-vc-request")
            reason = self._check_vc_once(r)
            if reason is not None:
                return self._drop("nv-propose-" + reason)
            senders.add(r.sender)
            requests.append(r)
        if len(requests) < self.nf:
            return self._drop("nv-propose-too-few")
        history = new_history_ts(requests) if self.ts else \
            new_history_mac(requests, self.f, self.nf)
        if history is None:
            return self._drop("nv-propose-undecidable")
        out = []
        # durable before anything of the new view is acted on or revealed (§4.11)
        self._persist_new_view(new_view, m.sender, [bytes(r.frame) for r in requests], out)
        self.install_view(new_view, history, now, out)
        return out

    def _persist_new_view(self, new_view: int, sender: int, frames: list, out: list) -> None:
        """Persist how ``new_view`` began: its NV-PROPOSE (unauthenticated: the nf signed
        VC-REQUESTs verify themselves), so a restart inside it installs it again."""
        out.append(Persist(("nv-propose", new_view, codec.encode_nv_propose(
            sender, new_view, frames, auth=codec.AUTH_NONE))))

    def restore_new_view(self, data: bytes, now: float, out: list) -> bool:
        """Recovery: install again the view whose NV-PROPOSE the store holds (the replica's
        view is that view's predecessor, nothing executed above its stable checkpoint).
        The VC-REQUESTs are checked again: a file's bytes are not trusted. As that view's
        primary, the NV-PROPOSE is ours again to re-send to replicas that ask."""
        try:
            m = codec.decode(data)
        except codec.WireError:
            return False
        new_view = m.view
        if m.kind != codec.NV_PROPOSE or new_view == 0:
            return False
        senders: set[int] = set()
        for r in m.requests:
            if r.view != new_view - 1 or r.sender in senders or r.sender >= self.n \
                    or self._check_vc_once(r) is not None:
                return False
            senders.add(r.sender)
        if len(senders) < self.nf:
            return False
        history = new_history_ts(m.requests) if self.ts else \
            new_history_mac(m.requests, self.f, self.nf)
        if history is None:
            return False
        self.view, self.status, self.vc_view = new_view - 1, VIEW_CHANGE, new_view - 1
        self.install_view(new_view, history, now, out)
        if self.config.primary(new_view) == self.id:
            self.nv_sent = new_view
            self.nv_frame = codec.encode_nv_propose(self.id, new_view,
                                                    [bytes(r.frame) for r in m.requests])
        self.stats["new-view-restored"] += 1
        return True

    # ------------------------------------------------------------------ the new view

    def install_view(self, new_view: int, history: NewHistory, now: float, out: list) -> None:
        """Apply the new history (§4.6): checkpoint base, rollback, switch view,
        re-certify, then re-execute once certified in the new view."""
        base = history.base
        stable = self.checkpoints.stable.seq
        if stable < base.seq <= self.k_exec \
                and self.block_hashes.get(base.seq) != base.chain_digest:
            # our prefix below the base is not the agreed one (§4.6 step 1): stop executing
            # and informing on it now, back to our own stable checkpoint, then transfer
            self.stats["view-diverged-below-base"] += 1
            self.diverged = True
            self.rollback(stable, history, now, out)
        if base.seq > self.k_exec:
            # we are behind the base: state transfer (§5.5)
            self.stats["view-behind-base"] += 1
            self.behind = base
            self.max_seen = max(self.max_seen, base.seq)
            self.need_state(base, now, out)
        # rollback: from the first executed position the new history does not keep
        first = max(base.seq, stable) + 1
        keep_to = self.k_exec
        for k in range(first, self.k_exec + 1):
            entry = history.entries.get(k)
            slot = self.window.payload(k) if self.window.contains(k) else None
            held = slot.digest if slot is not None else None
            if entry is None or held != entry.digest:
                keep_to = k - 1
                break
        if keep_to < self.k_exec:
            self.rollback(keep_to, history, now, out)
        # switch view
        self.view = new_view
        self.status = NORMAL
        self.vc_view = -1
        self.kstart = max(history.k_max, base.seq)
        self.history = history
        self.nv_armed_for = -1
        out.append(CancelTimer(TIMER_NEW_VIEW, new_view - 1))
        out.append(Persist(("view", new_view)))
        for sender, held in list(self.vc_requests.items()):
            for view in [v for v in held if v < new_view]:
                del held[view]
            if not held:
                del self.vc_requests[sender]
        self.own_vcs.clear()
        self.watch.new_view()        # a new view gets its own chance to serve every client
        # the old view's queue is void (§4.6 step 6: the new primary proposes what it is
        # sent in the new view), as on leaving it (start_view_change): a replica that
        # installs a view straight from the normal case of an older one never sent a
        # VC-REQUEST, and the key of a proposal the new history dropped stayed pending
        # (with its client's share slot) until this replica was primary again
        self.open_messages, self.open_ops = [], 0
        self.ready.clear()
        self.pending.clear()
        self.stats["views-installed"] += 1
        window = self.window
        for k in range(window.low + 1, window.high + 1):
            entry = history.entries.get(k)
            if entry is not None:
                self._take_position(k, entry, now)
            elif k > self.k_exec and window.payload(k) is not None:
                window.reset(k)             # proposals and votes of old views: gone
        self.h_next = base.seq + 1 if history.entries else history.k_max + 1
        # evidence from old views above the new history is void (those slots were reset)
        self.max_seen = max(history.k_max, base.seq, self.k_exec)
        self.pacemaker.view_installed(self.k_exec)
        if self.is_primary:
            self.next_k = max(history.k_max, base.seq, window.low) + 1
        self._recertify(now, out, only_missing=False)
        self._advance_recertified(now, out)
        if history.entries:
            self._arm_progress(now, out)
        self._arm_tick(now, out)

    def _take_position(self, k: int, entry: HistoryEntry, now: float) -> Slot:
        """Make slot k hold position k of the current view's history: an accepted proposal
        of this view with digest H[k] (§4.6 step 4); keep the batch, old certificate and
        execution if they match, forget every vote of older views."""
        window = self.window
        slot = window.payload(k)
        if slot is not None and slot.prop_view == self.view and slot.digest == entry.digest:
            return slot                              # already taken in this view
        # §4.6 step 2: a kept position's digest never changes without a rollback below it
        assert slot is None or not slot.executed or slot.digest == entry.digest, \
            f"§4.6: position {k} executed with another digest than the new history's"
        if slot is None:
            slot = self._slot(k, now)
        elif not slot.executed or slot.digest != entry.digest:
            batch = slot.batch if slot.digest == entry.digest else None
            cert = (slot.cert_view, slot.cert_digest, slot.cert)
            window.reset(k)
            slot = self._slot(k, now)
            slot.batch = batch
            slot.cert_view, slot.cert_digest, slot.cert = cert
        else:
            window.reset(k)
            window.set_payload(k, slot)
        if slot.batch is None and entry.digest != NOOP_DIGEST:
            # the body may be held from any earlier view, by (k, digest) (§4.11)
            slot.batch = self._body_for(k, entry.digest)
        slot.prop_view, slot.digest = self.view, entry.digest
        slot.committed = False
        slot.shares, slot.bad, slot.own_support, slot.early = None, None, None, None
        slot.proposal = None
        window.set_digest(k, entry.digest)
        return slot

    def rollback(self, keep_to: int, history: NewHistory, now: float, out: list) -> None:
        """Undo every executed batch above ``keep_to`` (undo records, ledger truncation)
        and forward their requests to the new primary (§4.6 step 2)."""
        self.stats["rollbacks"] += 1
        self.stats["rolled-back-batches"] += self.k_exec - keep_to
        new_primary = self.config.primary(self.vc_view + 1 if self.vc_view >= 0
                                          else self.view + 1)
        for k in range(keep_to + 1, self.k_exec + 1):
            slot = self.window.payload(k)
            slot.executed = False
            slot.results = None
            entry = history.entries.get(k)
            if slot.batch is not None and (entry is None or entry.digest != slot.digest):
                for i in range(len(slot.batch)):
                    request = codec.encode_request(bytes(slot.batch.message(i)), self.view)
                    if new_primary != self.id:
                        out.append(Send(new_primary, request))
            del self.block_hashes[k]
        self.kv.rollback_to(keep_to)
        self._unretain_above(keep_to)
        self.k_exec = keep_to
        self.head = self.block_hashes[keep_to]
        self.replies.drop_above(keep_to)
        out.append(RolledBack(keep_to))

    def _recertify(self, now: float, out: list, only_missing: bool) -> None:
        """SUPPORT(v+1, k, H[k]) for every position of the new history (§4.6 step 4)."""
        history = self.history
        if history is None:
            return
        for k in range(max(self.h_next, self.window.low + 1), history.k_max + 1):
            if not self.window.contains(k):
                break
            entry = history.entries.get(k)
            if entry is None:
                continue
            slot = self._take_position(k, entry, now)   # e.g. after a state transfer
            if only_missing and slot.cert_view == self.view:
                continue
            if slot.digest == NOOP_DIGEST:
                # nothing to support, but we hold the no-op of this view's history: report it
                # as Q_k so a later MAC view change can keep it (A2 of §3.4)
                if not self.ts:
                    self.evidence.support(k, self.view, NOOP_DIGEST)
                continue
            if self.is_primary and self.ts:
                if slot.shares is None:
                    slot.shares = {self.id: self.crypto.threshold_signer.share_sign(
                        support_statement(self.view, k, slot.digest))}
                    slot.bad = set()
                continue
            if slot.own_support is None:
                self.support(k, slot, out)
                if not self.ts:
                    # the NV-PROPOSE is the new primary's proposal of H: its SUPPORT
                    self.window.vote(k, 0, self.primary)
                    if slot.early:
                        for sender, digest in slot.early.items():
                            if digest == slot.digest:
                                self.window.vote(k, 0, sender)
                        slot.early = None
                    self._check_mac_commit(k, slot)
            elif only_missing:
                self._send_support(k, slot, out)

    def _advance_recertified(self, now: float, out: list) -> None:
        """Move past positions of the new history certified in this view; kept executed
        ones are INFORMed again under the new view (§4.6 step 5)."""
        history = self.history
        if history is None:
            return
        # positions at or below a stable checkpoint are final: nothing to certify again
        self.h_next = max(self.h_next, self.window.low + 1)
        while self.h_next <= history.k_max:
            k = self.h_next
            slot = self.window.payload(k) if self.window.contains(k) else None
            if slot is not None and slot.digest == NOOP_DIGEST:
                slot.committed = True
                slot.cert_view, slot.cert_digest = self.view, NOOP_DIGEST
                self.evidence.prepared(k, self.view, NOOP_DIGEST)     # P_k (§3.4, §4.11)
            elif slot is None or slot.cert_view != self.view or not slot.committed:
                if k <= self.k_exec and slot is not None and slot.cert_view == self.view:
                    pass                      # certified, kept: fall through
                else:
                    break
            if k <= self.k_exec:
                # kept, executed: from now on it stands in the ledger as certified in this
                # view (so a restart restores it), before its INFORM of this view leaves
                out.append(Persist(("kept", self.view, k, slot.digest)))
                if slot.results is not None:
                    self.inform(k, slot, slot.results, out)
                    self.stats["re-informed-batches"] += 1
            self.h_next = k + 1
        if self.h_next > history.k_max:
            self.history = None               # every position certified in this view
        self._try_execute(now, out)
