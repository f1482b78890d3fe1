"""Checkers of a simulated run: safety, client-observed correctness, bounds and liveness.

What it is for: watching the actions the replicas emit (Executed, RolledBack, Stable), what
the clients submit and complete, and the state of every correct replica, and recording a
violation (a line of text) for:

* agreement: two correct replicas executing different batches at one sequence number in one
  view, or holding different batches at one position of their final ledgers; different
  state digests or ledger heads after the same prefix; a request executed twice by one
  replica; a view or an executed sequence going backwards without a rollback event; two
  correct replicas disagreeing on a stable checkpoint;
* proof-of-execution preservation (PROTOCOL.md §4.1 goal 1): a client's ``Completed`` (nf
  matching INFORMs) names (seq, index, results); every correct replica whose ledger holds
  ``seq`` must hold there a batch whose message ``index`` is that client's, with exactly
  those results (never a no-op), checked when the proof arrives, whenever a correct replica
  executes ``seq`` in any later view, after every rollback and at the end (so a rollback
  after the second, third, ... view change is seen); a correct replica that held it must never
  roll back below it, unless a state transfer then gives it a stable checkpoint at or above
  it (§4.6 step 1, §5.5: the rollback to its own stable checkpoint that precedes one);
* truthful answers: a client's proof says its message did not run (every operation
  DUPLICATE or STALE) although a correct replica executed that very message (same
  operations) with effect, before or after the proof (§2.8, §10 row 7: exactly once; a
  STALE answer to an executed message tells its client that a write which happened did
  not);
* linearizability per key: completed operations, placed at (seq, index, op), respect
  real-time order (A answered before B was submitted => A before B) and every result equals
  what replaying the final ledger's writes from the preloaded YCSB state gives there;
* bounds: every queue and cache of a correct replica stays within its configured bound
  (sampled during the run by the driver);
* liveness: once faults stop, every client message completes within a bound.

Byzantine replicas (``byzantine``) are not checked: only correct ones are. Unknown action
types are ignored (dispatch by type), so new protocol actions do not break the checkers.

What it must never do: change what it watches (it only reads replicas, batches and
results), or decide anything from wall-clock time or unseeded randomness.
"""
from __future__ import annotations

import bisect
from collections import defaultdict

from poe._core.codec import (
    OP_INSERT, OP_READ, OP_RMW, OP_UPDATE, ST_DUPLICATE, ST_EXISTS, ST_NOT_FOUND, ST_OK,
    ST_STALE,
)
from poe.protocol.actions import Executed, RolledBack, Stable

MAX_VIOLATIONS = 100
NOOP = "no-op"         # results_at of a position a replica executed as a no-op


def _norm(results) -> tuple:
    """((t, status, value), ...) with plain ints and bytes (comparable across sources)."""
    return tuple((int(t), int(s), bytes(v)) for t, s, v in results)


class SafetyChecker:
    def __init__(self, n: int, check_requests: bool = True, proof_quorum: int | None = None,
                 protocol: str = "poe") -> None:
        self.n = n
        # matching replies a client needs for a proof: nf for PoE, f+1 for PBFT
        self.proof_quorum = proof_quorum if proof_quorum is not None else n - (n - 1) // 3
        self.protocol = protocol
        self.check_requests = check_requests
        self.ledgers: list[dict[int, tuple[int, bytes, bytes]]] = [{} for _ in range(n)]
        self.last_exec = [0] * n
        self.last_view = [0] * n
        self.stable_seq = [0] * n
        self.by_view_seq: dict[tuple[int, int], tuple[bytes, int]] = {}
        self.stable: dict[int, tuple[bytes, bytes, int]] = {}
        self.executed: list[dict[tuple[int, int], int]] = [{} for _ in range(n)]
        self.rollbacks = 0
        self.violations: list[str] = []
        self._seen_violations: set[str] = set()
        self.byzantine: set[int] = set()
        self.crashed: set[int] = set()      # crashed replicas: not held to new proofs
        # proof of execution: per replica, seq -> the kv results it executed there; one
        # batch per (seq, digest); proofs by seq: [(client, index, results, view, handle)]
        self.results_at: list[dict[int, object]] = [{} for _ in range(n)]
        self.batches: dict[tuple[int, bytes], object] = {}
        self.proofs: dict[int, list[tuple[int, int, tuple, int]]] = defaultdict(list)
        self.proof_at: dict[tuple[int, int], tuple[int, int]] = {}   # (seq, index) -> who
        # proven positions a replica rolled back and must get back by state transfer
        self.unresolved: list[dict[int, str]] = [{} for _ in range(n)]
        # client history: (client, handle) -> (invoked at, ops) / (answered at, Completed)
        self.invoked: dict[tuple[int, int], tuple[float, tuple]] = {}
        self.answered: dict[tuple[int, int], tuple[float, object]] = {}
        self.unknown: dict[tuple[int, int], float] = {}
        # proofs that say "not executed": (client, first request id) -> handle
        self.not_run: dict[tuple[int, int], int] = {}
        self.initial = None             # (record_count, value_size, seed) of the YCSB load
        self.zero_payload = False
        # liveness: faults stopped at ``healed_at``; messages must complete within bound
        self.healed_at: float | None = None
        self.liveness_bound_s = 0.0
        self.bound_samples = 0
        self.history_ops_checked = 0

    def violation(self, text: str) -> None:
        if len(self.violations) < MAX_VIOLATIONS and text not in self._seen_violations:
            self._seen_violations.add(text)
            self.violations.append(text)

    def set_initial_state(self, record_count: int, value_size: int, seed: int,
                          zero_payload: bool = False) -> None:
        """The YCSB load every replica starts from (``kv.load_sequential`` arguments)."""
        self.initial = (record_count, value_size, seed)
        self.zero_payload = zero_payload

    # ------------------------------------------------------------------ replica events

    def on_executed(self, r: int, a: Executed) -> None:
        if r in self.byzantine:
            return
        self._resolve(r)
        if a.seq != self.last_exec[r] + 1:
            self.violation(f"replica {r} executed {a.seq} after {self.last_exec[r]} "
                           "without a rollback")
        self.last_exec[r] = a.seq
        key = (a.view, a.seq)
        seen = self.by_view_seq.get(key)
        if seen is None:
            self.by_view_seq[key] = (a.digest, r)
        elif seen[0] != a.digest:
            self.violation(f"replicas {seen[1]} and {r} executed different batches at "
                           f"view {a.view} seq {a.seq}")
        self.ledgers[r][a.seq] = (a.view, a.digest, a.block_hash)
        if self.check_requests and a.batch is None:
            # a no-op (a position a MAC new view decided empty): never where a client holds
            # a proof, in any later view (§4.1 goal 1)
            self.results_at[r][a.seq] = NOOP
            for proof in self.proofs.get(a.seq, ()):
                self._check_proof(r, a.seq, proof)
            return
        if not self.check_requests or a.batch is None or a.results is None:
            return
        self.batches.setdefault((a.seq, a.digest), a.batch)
        self.results_at[r][a.seq] = a.results
        executed = self.executed[r]
        batch, results = a.batch, a.results
        for i in range(len(batch)):
            client = batch.client(i)
            for t, status, _ in results.ops(i):
                if status == ST_DUPLICATE or status == ST_STALE:
                    continue
                previous = executed.get((client, t))
                if previous is not None:
                    self.violation(f"replica {r} executed request ({client}, {t}) twice: "
                                   f"at {previous} and at {a.seq}")
                executed[(client, t)] = a.seq
        for proof in self.proofs.get(a.seq, ()):
            self._check_proof(r, a.seq, proof)

    def on_rolled_back(self, r: int, a: RolledBack) -> None:
        if r in self.byzantine:
            return
        self.rollbacks += 1
        if a.seq > self.last_exec[r]:
            self.violation(f"replica {r} rolled back to {a.seq} above its executed "
                           f"{self.last_exec[r]}")
        self._resolve(r)
        ledger = self.ledgers[r]
        # a proven position held here may only come back by state transfer to a stable
        # checkpoint at or above it (§4.6 step 1, §5.5): decided at the next Transferred
        for seq in [s for s in self.proofs if s > a.seq and s in ledger]:
            for proof in self.proofs[seq]:
                if self._proof_problem(r, seq, proof) is None:
                    self.unresolved[r][seq] = (
                        f"replica {r} rolled back to {a.seq}, below the proof-of-executed "
                        f"position {seq} (client {proof[0]}, message {proof[4]})")
        self._forget_above(r, a.seq)
        for seq, proofs in self.proofs.items():       # what is kept must still match
            if seq <= a.seq:
                for proof in proofs:
                    self._check_proof(r, seq, proof)

    def on_stable(self, r: int, a: Stable) -> None:
        if r in self.byzantine:
            return
        self.stable_seq[r] = max(self.stable_seq[r], a.seq)
        seen = self.stable.get(a.seq)
        if seen is None:
            self.stable[a.seq] = (a.state_digest, a.chain_digest, r)
        elif seen[:2] != (a.state_digest, a.chain_digest):
            self.violation(f"replicas {seen[2]} and {r} disagree on stable checkpoint {a.seq}")

    def _resolve(self, r: int, transferred_to: int = -1) -> None:
        """Proven positions rolled back by r: fine if a state transfer brought back a
        stable checkpoint at or above them, a violation otherwise."""
        pending = self.unresolved[r]
        if pending:
            for seq, text in sorted(pending.items()):
                if seq > transferred_to:
                    self.violation(text)
            pending.clear()

    def on_transferred(self, r: int, a) -> None:
        """State transfer (§5.5): the replica now holds the state of stable checkpoint
        a.seq; positions between its old prefix and a.seq were never executed by it."""
        if r in self.byzantine:
            return
        self._resolve(r, a.seq)
        if a.seq < self.last_exec[r]:
            self.violation(f"replica {r} transferred to {a.seq} below its executed "
                           f"{self.last_exec[r]} without a rollback")
        self.last_exec[r] = a.seq
        self.on_stable(r, a)

    def on_view(self, r: int, view: int) -> None:
        if r in self.byzantine:
            return
        if view < self.last_view[r]:
            self.violation(f"replica {r} went from view {self.last_view[r]} back to {view}")
        self.last_view[r] = view

    def restarted(self, r: int) -> None:
        """A crashed replica restarts from scratch: its history starts again."""
        self.crashed.discard(r)
        self.unresolved[r].clear()
        self._forget_above(r, 0)
        self.last_view[r] = 0
        self.stable_seq[r] = 0

    def restored(self, r: int, stable: int, view: int) -> None:
        """A crashed replica restarts from its store (durable simulation): it holds its
        stable checkpoint ``stable`` (and its ledger up to it) and the installed ``view``;
        what it had executed above the checkpoint is gone from its memory, and the blocks
        it restores are executed again (each checked like any execution)."""
        self.crashed.discard(r)
        if stable < self.stable_seq[r]:
            self.violation(f"replica {r} restarted from checkpoint {stable}, below its "
                           f"stable checkpoint {self.stable_seq[r]} before the crash")
        if view < self.last_view[r]:
            self.violation(f"replica {r} restarted in view {view}, below the view "
                           f"{self.last_view[r]} it had installed")
        self.unresolved[r].clear()
        self._forget_above(r, stable)
        self.last_view[r] = view

    def _forget_above(self, r: int, seq: int) -> None:
        """Replica r no longer holds what it executed above ``seq``."""
        for table in (self.ledgers[r], self.results_at[r]):
            for k in [k for k in table if k > seq]:
                del table[k]
        executed = self.executed[r]
        for key in [key for key, k in executed.items() if k > seq]:
            del executed[key]
        self.last_exec[r] = seq

    def dispatch(self, r: int, action) -> None:
        t = type(action)
        if t is Executed:
            self.on_executed(r, action)
        elif t is RolledBack:
            self.on_rolled_back(r, action)
        elif t is Stable:
            self.on_stable(r, action)

    # ------------------------------------------------------------------ client events

    def on_submitted(self, client: int, handle: int, ops, now: float) -> None:
        """Client ``client`` invoked message ``handle`` with ``ops`` ((key, code, value))."""
        self.invoked[(client, handle)] = (now, tuple(ops) if self.check_requests else ())

    def on_completed(self, client: int, c, now: float) -> None:
        """A proof of execution (``Completed``) reached client ``client``."""
        key = (client, c.handle)
        if key in self.answered:
            self.violation(f"client {client} message {c.handle} completed twice")
            return
        self.answered[key] = (now, c)
        f = (self.n - 1) // 3
        need = f + 1 if getattr(c, "final", False) else self.proof_quorum
        if len(set(c.replicas)) < need:
            # a proof of execution is nf matching INFORMs from distinct replicas (§2.4), or
            # f+1 matching FINAL ones (a position at or below a stable checkpoint)
            self.violation(f"client {client} message {c.handle} accepted a proof of "
                           f"{len(set(c.replicas))} INFORMs; a proof needs "
                           f"{'f+1' if need == f + 1 else 'nf'} = {need}")
        if not self.check_requests:
            return
        where = (c.seq, c.index)
        other = self.proof_at.get(where)
        if other is not None and other != key:
            self.violation(f"client {key[0]} message {key[1]} and client {other[0]} message "
                           f"{other[1]} both hold proofs for seq {c.seq} index {c.index}")
        self.proof_at[where] = key
        proof = (client, c.index, _norm(c.results), c.view, c.handle)
        self.proofs[c.seq].append(proof)
        if c.results and all(status in (ST_DUPLICATE, ST_STALE) for _, status, _ in c.results):
            # checked against the final ledger (check_history): a speculative execution
            # rolled back later does not count
            self.not_run[(client, int(c.results[0][0]))] = c.handle
        for r in range(self.n):
            # a crashed replica keeps whatever it had speculated; it is checked again once
            # it restarts (from scratch) and executes
            if r not in self.byzantine and r not in self.crashed:
                self._check_proof(r, c.seq, proof)

    def _check_not_run(self, client: int, handle: int, seq: int, ops) -> None:
        """Client ``client``'s proof for message ``handle`` says it did not run; the final
        ledger holds at seq, executed with effect, a message of that client starting at the
        same request id with operations ``ops``: a violation if they are the message's."""
        invoked = self.invoked.get((client, handle))
        if invoked is None or not invoked[1] or [
                (key, code, bytes(value)) for _, key, code, value in ops] != [
                (key, code, bytes(value)) for key, code, value in invoked[1]]:
            return          # another message under that id (two processes, one client id)
        self.violation(f"client {client} message {handle} was answered DUPLICATE/STALE (not "
                       f"executed), but the final ledger executed it at seq {seq}")

    def on_outcome_unknown(self, client: int, handle: int, now: float) -> None:
        self.unknown[(client, handle)] = now

    # ------------------------------------------------------------------ proofs

    def _proof_problem(self, r: int, seq: int, proof) -> str | None:
        """None if replica r holds ``proof`` at seq (or holds nothing checkable there)."""
        entry = self.ledgers[r].get(seq)
        results = self.results_at[r].get(seq)
        if entry is None or results is None:
            return None
        if results is NOOP:
            return "holds a no-op there"
        batch = self.batches.get((seq, entry[1]))
        client, index, expected = proof[:3]
        if batch is None or index >= len(batch) or batch.client(index) != client:
            return "holds another batch there"
        invoked = self.invoked.get((client, proof[4]))
        if invoked is not None and invoked[1] and [
                (key, code, bytes(value)) for _, key, code, value in batch.ops(index)] != [
                (key, code, bytes(value)) for key, code, value in invoked[1]]:
            return "holds another message of that client there"
        if _norm(results.ops(index)) != expected:
            return "holds other results there"
        return None

    def _check_proof(self, r: int, seq: int, proof) -> None:
        problem = self._proof_problem(r, seq, proof)
        if problem is not None:
            self.violation(f"client {proof[0]} holds a proof of execution for seq {seq} "
                           f"index {proof[1]}, but correct replica {r} {problem}")

    # ------------------------------------------------------------------ bounds

    def check_bounds(self, replicas, config, skip=()) -> None:
        """Every queue and cache of every correct replica within its configured bound."""
        self.bound_samples += 1
        n = config.n
        per_window = config.window // config.checkpoint_period + 1
        for r, rep in enumerate(replicas):
            if r in self.byzantine or r in skip:
                continue
            checks = (
                ("reply cache", len(rep.replies), config.reply_cache_size),
                ("pending client messages", len(rep.pending), config.pending_requests_max),
                ("window slots", rep.window.used(), config.window),
                ("checkpoint votes", rep.checkpoints.pending(), per_window * n),
                ("kv undo (batches)", rep.kv.executed_seq - rep.kv.final_seq, config.window),
                ("block hashes", len(rep.block_hashes), config.window + 1),
                ("open client messages", len(rep.open_messages), config.batch_size),
            )
            # structures of the view change and state transfer (docs/architecture.md)
            optional = []
            forwarded = getattr(rep, "forwarded", None)
            if forwarded is not None and hasattr(config, "forwarded_max"):
                optional.append(("tracked client retries", len(forwarded),
                                 config.forwarded_max))
            snapshots = getattr(rep, "snapshots", None)
            if snapshots is not None:
                optional.append(("snapshots", len(snapshots), per_window))
            vc_requests = getattr(rep, "vc_requests", None)
            if vc_requests is not None:
                optional.append(("VC-REQUESTs held", sum(len(v) for v in vc_requests.values()),
                                 4 * n))
            for what, value, bound in (*checks, *optional):
                if value > bound:
                    self.violation(f"replica {r}: {what} {value} above its bound {bound}")

    # ------------------------------------------------------------------ liveness

    def faults_stopped(self, now: float, bound_s: float) -> None:
        """From ``now`` on the network is healed and no replica misbehaves: every client
        message pending then or submitted later must complete within ``bound_s``."""
        self.healed_at = now
        self.liveness_bound_s = bound_s

    def _check_liveness(self, now: float) -> None:
        healed, bound = self.healed_at, self.liveness_bound_s
        for key, (invoked, _) in self.invoked.items():
            done = self.answered.get(key)
            if done is not None and done[0] < healed:
                continue
            if key in self.unknown and self.unknown[key] < healed:
                continue
            deadline = max(invoked, healed) + bound
            if done is not None:
                if done[0] > deadline:
                    self.violation(f"liveness: client {key[0]} message {key[1]} completed "
                                   f"{done[0] - max(invoked, healed):.3f} s after the faults "
                                   f"stopped, above the bound {bound} s")
            elif key in self.unknown:
                self.violation(f"liveness: client {key[0]} message {key[1]} gave up "
                               f"(outcome unknown) after the faults stopped")
            elif now >= deadline:
                self.violation(f"liveness: client {key[0]} message {key[1]} still pending "
                               f"{now - max(invoked, healed):.3f} s after the faults stopped "
                               f"(bound {bound} s)")

    # ------------------------------------------------------------------ linearizability

    def _final_ledger(self, correct) -> list[tuple[int, object, object]]:
        """(seq, batch, results) of the agreed final ledger of the correct replicas, from
        seq 1 up to the first position no correct replica can show."""
        out = []
        seq = 1
        while True:
            found = None
            for r in correct:
                entry = self.ledgers[r].get(seq)
                results = self.results_at[r].get(seq)
                if entry is not None and results is not None:
                    batch = self.batches.get((seq, entry[1]))
                    if batch is not None:
                        found = (seq, batch, results)
                        break
            if found is None:
                return out
            out.append(found)
            seq += 1

    def _initial_value(self):
        if self.initial is None:
            return lambda key: None
        from poe._core.kv import KVStore
        store = KVStore()
        store.load_sequential(*self.initial)
        return store.get

    def check_history(self, correct) -> None:
        """Real-time order per key and read values against a replay of the final ledger."""
        placed: dict[int, list[tuple[tuple[int, int, int], float, float]]] = defaultdict(list)
        completed_at: dict[tuple[int, int], tuple[int, int, tuple]] = {}
        for key, (answered, c) in self.answered.items():
            invoked = self.invoked.get(key)
            if invoked is None:
                continue
            ops = invoked[1]
            completed_at[(c.seq, c.index)] = (key[0], key[1], _norm(c.results))
            for j, op in enumerate(ops):
                placed[op[0]].append(((c.seq, c.index, j), invoked[0], answered))
        for key, events in placed.items():
            # A answered before B was invoked => pos(A) < pos(B)
            by_answer = sorted(events, key=lambda e: e[2])
            answers = [e[2] for e in by_answer]
            prefix_max = []
            best = None
            for e in by_answer:
                best = e if best is None or e[0] > best[0] else best
                prefix_max.append(best)
            for pos, invoked, _ in events:
                i = bisect.bisect_left(answers, invoked) - 1
                if i >= 0 and prefix_max[i][0] >= pos:
                    a = prefix_max[i]
                    self.violation(f"linearizability: key {key}: an operation answered at "
                                   f"{a[2]:.6f} is placed at {a[0]}, not before one invoked "
                                   f"later at {invoked:.6f} and placed at {pos}")
        if not completed_at:
            return
        not_run = self.not_run
        if self.zero_payload:
            # no key is touched, results are empty: only what ran and what did not
            for seq, batch, results in self._final_ledger(correct) if not_run else ():
                for i in range(len(batch)):
                    first = (batch.client(i), batch.first_request_id(i))
                    if first in not_run and results.ops(i)[0][1] not in (ST_DUPLICATE,
                                                                          ST_STALE):
                        self._check_not_run(first[0], not_run[first], seq, batch.ops(i))
            return
        initial = self._initial_value()
        model: dict[int, bytes | None] = {}
        checked = 0
        for seq, batch, results in self._final_ledger(correct):
            for i in range(len(batch)):
                ops = batch.ops(i)
                statuses = results.ops(i)
                if not_run:
                    first = (batch.client(i), ops[0][0])
                    if first in not_run and statuses[0][1] not in (ST_DUPLICATE, ST_STALE):
                        self._check_not_run(first[0], not_run[first], seq, ops)
                proof = completed_at.get((seq, i))
                if proof is not None and batch.client(i) != proof[0]:
                    proof = None           # reported by the proof checker
                for j, (t, key, code, value) in enumerate(ops):
                    status = statuses[j][1]
                    if status == ST_DUPLICATE or status == ST_STALE:
                        expected = None
                    else:
                        current = model[key] if key in model else initial(key)
                        expected, new = _apply(code, current, value)
                        if new is not _SAME:
                            model[key] = new
                    if proof is None or expected is None:
                        continue
                    checked += 1
                    got = proof[2][j] if j < len(proof[2]) else None
                    if got is None or got[0] != t or (got[1], got[2]) != expected:
                        self.violation(
                            f"linearizability: client {proof[0]} message {proof[1]} op {j} "
                            f"(key {key}) at seq {seq} index {i} returned {got}, replaying "
                            f"the ledger gives {(t, *expected)}")
        self.history_ops_checked = checked

    # ------------------------------------------------------------------ end of run

    def finish(self, replicas, correct, now: float | None = None) -> list[str]:
        """Compare final ledgers and states of the correct replicas; check every proof of
        execution, the client history and (after ``faults_stopped``) liveness."""
        correct = [r for r in correct if r not in self.byzantine]
        for r in correct:
            if getattr(replicas[r], "transfer", None) is None:    # not still transferring
                self._resolve(r)
        for i, a in enumerate(correct):
            for b in correct[i + 1:]:
                la, lb = self.ledgers[a], self.ledgers[b]
                for seq in la.keys() & lb.keys():
                    if la[seq][1] != lb[seq][1]:
                        self.violation(f"final ledgers of replicas {a} and {b} differ at {seq}")
                        break
        if self.protocol == "pbft":
            # PBFT executes only committed batches: a view change never undoes one
            for r in correct:
                rolled = replicas[r].stats.get("rolled-back-batches", 0)
                if rolled:
                    self.violation(f"PBFT replica {r} rolled back {rolled} executed batches "
                                   "in a view change (it may execute only committed ones)")
        by_prefix: dict[int, tuple[bytes, bytes, int]] = {}
        for r in correct:
            rep = replicas[r]
            state = (rep.kv.state_digest(), rep.head)
            seen = by_prefix.setdefault(rep.k_exec, (*state, r))
            if seen[:2] != state:
                self.violation(f"replicas {seen[2]} and {r} executed up to {rep.k_exec} but "
                               "their state digests or ledger heads differ")
        if self.check_requests:
            for seq, proofs in self.proofs.items():
                for proof in proofs:
                    for r in correct:
                        self._check_proof(r, seq, proof)
            self.check_history(correct)
        if self.healed_at is not None and now is not None:
            self._check_liveness(now)
        return self.violations


_SAME = object()


def _apply(code: int, current: bytes | None, value: bytes):
    """(expected (status, result value), new value or _SAME) of one YCSB operation."""
    if code == OP_READ:
        return ((ST_OK, current) if current is not None else (ST_NOT_FOUND, b"")), _SAME
    if code == OP_INSERT:
        if current is not None:
            return (ST_EXISTS, b""), _SAME
        return (ST_OK, b""), bytes(value)
    if current is None:
        return (ST_NOT_FOUND, b""), _SAME
    if code == OP_RMW:
        return (ST_OK, current), bytes(value)
    if code == OP_UPDATE:
        return (ST_OK, b""), bytes(value)
    return (ST_NOT_FOUND, b""), _SAME
