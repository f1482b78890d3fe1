"""Safety checkers of a simulated run (issue #4; more join with the view change).

They watch the actions the replicas emit (Executed, RolledBack, Stable) and the final state
of every correct replica, and record a violation for: two correct replicas executing
different batches at one sequence number in one view, or holding different batches at one
position of their final ledgers; different state digests or ledger heads after the same
prefix; a request executed twice by one replica; a view or an executed sequence going
backwards without a rollback event. Must never: change what it watches.
"""
from __future__ import annotations

from poe._core.codec import ST_DUPLICATE, ST_STALE
from poe.protocol.actions import Executed, RolledBack, Stable


class SafetyChecker:
    def __init__(self, n: int, check_requests: bool = True) -> None:
        self.n = n
        self.check_requests = check_requests
        self.ledgers: list[dict[int, tuple[int, bytes, bytes]]] = [{} for _ in range(n)]
        self.last_exec = [0] * n
        self.last_view = [0] * n
        self.by_view_seq: dict[tuple[int, int], tuple[bytes, int]] = {}
        self.stable: dict[int, tuple[bytes, bytes, int]] = {}
        self.executed: list[dict[tuple[int, int], int]] = [{} for _ in range(n)]
        self.rollbacks = 0
        self.violations: list[str] = []
        self.byzantine: set[int] = set()

    def violation(self, text: str) -> None:
        if len(self.violations) < 100:
            self.violations.append(text)

    # ------------------------------------------------------------------ events

    def on_executed(self, r: int, a: Executed) -> None:
        if r in self.byzantine:
            return
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
        if self.check_requests and a.batch is not None and a.results is not None:
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

    def on_rolled_back(self, r: int, a: RolledBack) -> None:
        if r in self.byzantine:
            return
        self.rollbacks += 1
        if a.seq > self.last_exec[r]:
            self.violation(f"replica {r} rolled back to {a.seq} above its executed "
                           f"{self.last_exec[r]}")
        ledger = self.ledgers[r]
        for seq in [s for s in ledger if s > a.seq]:
            del ledger[seq]
        executed = self.executed[r]
        for key in [k for k, s in executed.items() if s > a.seq]:
            del executed[key]
        self.last_exec[r] = a.seq

    def on_stable(self, r: int, a: Stable) -> None:
        if r in self.byzantine:
            return
        seen = self.stable.get(a.seq)
        if seen is None:
            self.stable[a.seq] = (a.state_digest, a.chain_digest, r)
        elif seen[:2] != (a.state_digest, a.chain_digest):
            self.violation(f"replicas {seen[2]} and {r} disagree on stable checkpoint {a.seq}")

    def on_view(self, r: int, view: int) -> None:
        if view < self.last_view[r]:
            self.violation(f"replica {r} went from view {self.last_view[r]} back to {view}")
        self.last_view[r] = view

    def restarted(self, r: int) -> None:
        """A crashed replica restarts from scratch: its history starts again."""
        self.ledgers[r].clear()
        self.executed[r].clear()
        self.last_exec[r] = 0
        self.last_view[r] = 0

    def dispatch(self, r: int, action) -> None:
        t = type(action)
        if t is Executed:
            self.on_executed(r, action)
        elif t is RolledBack:
            self.on_rolled_back(r, action)
        elif t is Stable:
            self.on_stable(r, action)

    # ------------------------------------------------------------------ end of run

    def finish(self, replicas, correct) -> list[str]:
        """Compare final ledgers and states of the correct replicas."""
        correct = [r for r in correct if r not in self.byzantine]
        for i, a in enumerate(correct):
            for b in correct[i + 1:]:
                la, lb = self.ledgers[a], self.ledgers[b]
                for seq in la.keys() & lb.keys():
                    if la[seq][1] != lb[seq][1]:
                        self.violation(f"final ledgers of replicas {a} and {b} differ at {seq}")
                        break
        by_prefix: dict[int, tuple[bytes, bytes, int]] = {}
        for r in correct:
            rep = replicas[r]
            state = (rep.kv.state_digest(), rep.head)
            seen = by_prefix.setdefault(rep.k_exec, (*state, r))
            if seen[:2] != state:
                self.violation(f"replicas {seen[2]} and {r} executed up to {rep.k_exec} but "
                               "their state digests or ledger heads differ")
        return self.violations
