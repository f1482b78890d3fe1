"""Prove the simulator's checkers bite: apply known bugs one at a time and count how many
swarm seeds it takes to catch each (issue #5, item 7).

Usage:  python tools/mutation_check.py [--seeds 500] [--start 1] [--only NAME ...]
        python tools/mutation_check.py --protocol pbft     # the PBFT baseline's mutants

For each mutant the swarm runs seeds start, start+1, ... with primary faults allowed (so
view changes happen) until one reports a violation (or a protocol exception) that the
unmutated code does not report for that seed. A mutant not caught within ``--seeds`` seeds
makes the tool exit 1. Mutations are monkeypatches applied in this process only.

A mutant listed in ``MUTANT_TESTS`` is about a fault the swarm does not inject (a corrupted
store file): it is caught by a named test instead, run in this process with the mutant
applied (it must fail) and without it (it must pass).
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from poe.baselines.pbft import replica as pbft_mod
from poe._core import codec
from poe.protocol.actions import Transferred
from poe.protocol.poe import client as client_mod
from poe.protocol.poe import clients as clients_mod
from poe.protocol.poe import replica as replica_mod
from poe.protocol import pacemaker as pacemaker_mod
from poe.protocol.poe import view_change as vc_mod
from poe.sim import swarm
from poe.storage import restore as restore_mod
from poe.storage import store as store_mod
from poe.storage import writer as writer_mod
from poe.transport import zmq as zmq_mod


def _patch(obj, name, value):
    original = getattr(obj, name)
    setattr(obj, name, value)
    return lambda: setattr(obj, name, original)


def client_accepts_f_plus_1():
    """The client takes f+1 matching INFORMs as a proof of execution (ResilientDB's bug)."""
    init = client_mod.PoEClient.__init__

    def patched(self, config, *args, **kwargs):
        init(self, config, *args, **kwargs)
        self.quorum = config.f + 1
    return _patch(client_mod.PoEClient, "__init__", patched)


def pbft_client_accepts_f():
    """The PBFT client takes f matching replies (one short of f+1) as final."""
    init = client_mod.PoEClient.__init__

    def patched(self, config, *args, **kwargs):
        init(self, config, *args, **kwargs)
        self.quorum = config.f
    return _patch(client_mod.PoEClient, "__init__", patched)


def pbft_execute_at_prepared():
    """PBFT executes once prepared, without waiting for nf COMMITs (and its client still
    takes f+1 replies): speculation without PoE's nf client quorum."""
    return _patch(pbft_mod.PBFTReplica, "_may_execute", lambda self, k, slot: True)


def certificate_from_2f():
    """Quorums of 2f instead of nf: MAC commit, checkpoints, NV-PROPOSE, certificates."""
    init = replica_mod.PoEReplica.__init__

    def patched(self, config, *args, **kwargs):
        init(self, config, *args, **kwargs)
        self.nf = 2 * config.f
        self.checkpoints.nf = 2 * config.f
    return _patch(replica_mod.PoEReplica, "__init__", patched)


def rollback_skipped():
    """The view change keeps every executed batch (no undo, no ledger truncation)."""
    return _patch(vc_mod.ViewChangeMixin, "rollback",
                  lambda self, keep_to, history, now, out: None)


def recertification_skipped():
    """Paper-literal new view: the history is executed under its old certificates."""
    advance = vc_mod.ViewChangeMixin._advance_recertified

    def patched(self, now, out):
        history = self.history
        if history is not None:
            for k, entry in history.entries.items():
                slot = self.window.payload(k) if self.window.contains(k) else None
                if slot is not None and slot.cert_view != self.view:
                    slot.cert_view, slot.cert_digest = self.view, entry.digest
                    slot.committed = slot.batch is not None or entry.digest == vc_mod.NOOP_DIGEST
        advance(self, now, out)
    return _patch(vc_mod.ViewChangeMixin, "_advance_recertified", patched)


def inform_after_vc_request():
    """A replica that sent VC-REQUEST(v) still takes part in view v: accepts PROPOSE,
    SUPPORT and CERTIFY of v, executes and INFORMs."""
    on_message = replica_mod.PoEReplica.on_message

    def patched(self, data, now):
        leaving = self.status == replica_mod.VIEW_CHANGE and self.vc_view == self.view
        if not leaving:
            return on_message(self, data, now)
        self.status = replica_mod.NORMAL
        try:
            return on_message(self, data, now)
        finally:
            if self.status == replica_mod.NORMAL and self.vc_view == self.view:
                self.status = replica_mod.VIEW_CHANGE
    return _patch(replica_mod.PoEReplica, "on_message", patched)


def watermark_off_by_one():
    """The new primary continues at k_max instead of k_max + 1 (kstart/low off by one)."""
    install = vc_mod.ViewChangeMixin.install_view

    def patched(self, new_view, history, now, out):
        install(self, new_view, history, now, out)
        if self.is_primary:
            self.next_k -= 1
    return _patch(vc_mod.ViewChangeMixin, "install_view", patched)


# durability (issue #7): the swarm's durable seeds restart replicas from their stores, and
# cut the power of every correct replica at once

def stable_not_durable():
    """The stable checkpoint (proof and snapshot) is never written to the store."""
    return _patch(store_mod.Store, "set_stable", lambda self, proof, snapshot: None)


def replies_not_durable():
    """The reply cache is not refilled from the stored results after a restart."""
    return _patch(restore_mod, "_restore_replies", lambda replica, store, upto: None)


def base_from_replica():
    """A state transfer's base is read from the replica at the end of the loop turn, not
    from the action (the ledger gap found by swarm seed 88)."""
    write = writer_mod.LedgerWriter.write

    def patched(self, a):
        if type(a) is Transferred:
            a = Transferred(a.seq, a.state_digest, a.chain_digest)
        return write(self, a)
    return _patch(writer_mod.LedgerWriter, "write", patched)


def votes_not_durable():
    """SUPPORT (and PROPOSE) votes are not written: a restarted replica may vote again,
    for something else, in the same view."""
    persist = store_mod.Store.persist_vote

    def patched(self, kind, view, seq, digest):
        return True if kind in ("support", "commit") else persist(self, kind, view, seq,
                                                                   digest)
    return _patch(store_mod.Store, "persist_vote", patched)


def pbft_commits_not_restored():
    """A restarted PBFT replica forgets which slots it had prepared: its durable COMMITs
    are read back neither into its slots nor as evidence (P_k), and its PREPAREs not as
    evidence (Q_k) — a view change after a power cut can drop a committed batch. (Reading
    back either one alone is enough since the evidence log of issue 13.)"""
    evidence = restore_mod._restore_evidence

    def patched(replica, store, report):
        report.commit_votes = {}                  # nor into the slots afterwards
        supports, report.support_votes = report.support_votes, {}
        try:
            return evidence(replica, store, report)
        finally:
            report.support_votes = supports       # the slots' own votes as before
    return _patch(restore_mod, "_restore_evidence", patched)


def corruption_check_skipped():
    """The start-up check of votes.hwm against the database's commit counter is skipped: a
    store whose write-ahead log lost committed transactions (and the votes in them) opens
    silently, shorter (issue 13, class 5)."""
    return _patch(store_mod.Store, "_check_hwm", lambda self, readonly: None)


def evidence_cleared_on_new_view():
    """Taking a position from an NV-PROPOSE clears its evidence (the old code's cause of
    class 1: P_k was read from the slot's committed flag, which the new view cleared)."""
    take = vc_mod.ViewChangeMixin._take_position

    def patched(self, k, entry, now):
        slot = take(self, k, entry, now)
        held = self.evidence.by_seq.get(k)
        if held is not None:
            held.cert_view, held.cert_digest, held.cert = -1, None, None
            held.p_view, held.p_digest = -1, None
            held.supported.clear()
        self._reported.pop(k, None)          # the invariant would name it at once
        return slot
    return _patch(vc_mod.ViewChangeMixin, "_take_position", patched)


def bodies_of_dropped_positions_discarded():
    """A new view drops the bodies of the positions it does not keep (class 2)."""
    install = vc_mod.ViewChangeMixin.install_view

    def patched(self, new_view, history, now, out):
        install(self, new_view, history, now, out)
        for k, held in self.evidence.by_seq.items():
            if k > history.k_max:
                held.bodies.clear()
    return _patch(vc_mod.ViewChangeMixin, "install_view", patched)


def fetch_only_from_current_slot():
    """FETCH is answered only from the slot of the current view, not from the bodies kept
    by (k, digest) (class 2)."""
    return _patch(replica_mod.PoEReplica, "_body_for", lambda self, k, digest: None)


def nv_propose_not_persisted():
    """The NV-PROPOSE (sent or accepted) is not persisted (class 4)."""
    return _patch(vc_mod.ViewChangeMixin, "_persist_new_view",
                  lambda self, new_view, sender, frames, out: None)


def certify_unauthenticated():
    """CERTIFY is taken without a MAC again (the old decision 7): a keyless party naming
    the primary with a bad certificate makes every backup suspect it (issue 14, class 1)."""
    auth = dict(replica_mod.PoEReplica._auth)
    auth[codec.CERTIFY] = (codec.AUTH_NONE, codec.AUTH_MAC)
    return _patch(replica_mod.PoEReplica, "_auth", auth)


def unserved_on_any_retry():
    """Every retry of an answered message counts toward "client unserved", as long as the
    client signed it, whoever else is in the view (the old rule; issue 14, class 2)."""
    def patched(self, m, key, now, out):
        seen = self.__dict__.setdefault("_mutant_retries", {})
        first, retries = seen.get(key, (now, 0))
        seen[key] = (first, retries + 1)
        if retries + 1 >= pacemaker_mod.RETRIES_BEFORE_SUSPECT \
                and now - first >= self.pacemaker.timeout_s \
                and self.watch._unserved_view != self.view:
            self.watch.unserved(self.view)
            self.suspect("client-unserved", now, out)
    return _patch(replica_mod.PoEReplica, "_count_unserved", patched)


def no_client_share():
    """The primary queues any number of one client's messages (issue 14, class 2)."""
    return _patch(clients_mod.PendingSet, "over_share", lambda self, client: False)


def forwarded_waits_past_share():
    """A backup waits for a forwarded message of a client however many of the client's
    messages executed since: a flooder's message the primary dropped for its share costs
    the primary its view (issue 14, class 2)."""
    def patched(self, now, timeout_s):
        return -1 if any(now - t >= timeout_s for t, _ in self.forwarded.values()) else 0
    return _patch(pacemaker_mod.RequestWatch, "expired", patched)



def executed_request_waited_for():
    """A request executed here whose answer was evicted is forwarded and waited for (T_req)
    again: the primary answers it from its cache and never orders it, and the backup
    suspects the correct primary (issue 14, the flood adversary)."""
    return _patch(replica_mod.PoEReplica, "_executed_here", lambda self, cid, t: False)


def checkpoint_unauthenticated():
    """CHECKPOINT is taken without a MAC from whoever it claims to be from (issue 14,
    class 1): a keyless party's copies cost a signature check each."""
    auth = dict(replica_mod.PoEReplica._auth)
    auth[codec.CHECKPOINT] = (codec.AUTH_NONE, codec.AUTH_MAC)
    return _patch(replica_mod.PoEReplica, "_auth", auth)


def one_early_support_counts():
    """One early SUPPORT for a far position is progress owed and binds "whatever you hold"
    FETCH replies (issue 14, class 3: f + 1 are needed, one may be a faulty replica's)."""
    def backed(self, slot, digest):
        return slot.early is not None and digest in slot.early.values()
    return _patch(replica_mod.PoEReplica, "_backed", backed)


def vc_request_entries_unbounded():
    """A VC-REQUEST may carry any number of entries (issue 14, class 3)."""
    check = vc_mod.check_vc_request

    def patched(m, **kw):
        if kw["window"] and len(m.entries) > kw["window"]:
            return None if check(m, **{**kw, "window": 10 ** 9}) is None else "invalid"
        return check(m, **kw)
    return _patch(vc_mod, "check_vc_request", patched)


def timeout_never_backs_off():
    """The progress timeout never doubles: a slow synchronous network gives view changes
    without end (issue 14, class 4; PROTOCOL.md §4.12)."""
    def leaving(self, executed):
        self._fired = False
    return _patch(pacemaker_mod.Pacemaker, "leaving_view", leaving)


def new_view_not_offered():
    """The primary of a new view never offers its NV-PROPOSE to a replica it hears nothing
    from (decision 71): a replica deaf during the view change stays left out."""
    def patched(self, out):
        self._heard = set()
    return _patch(replica_mod.PoEReplica, "_offer_new_view", patched)


def client_port_hands_over():
    """The client port hands a connected identity over to a newcomer (ZMQ_ROUTER_HANDOVER;
    issue 14, class 5): a peer using another client's identity cuts that client off."""
    configure = zmq_mod._configure

    def patched(sock, s, *, router, handover=True):
        return configure(sock, s, router=router, handover=True)
    return _patch(zmq_mod, "_configure", patched)



def pending_not_settled():
    """After a state transfer the primary keeps the pending keys of messages executed
    without ``inform`` (swarm seed 9012): their retries are dropped as request-pending and
    their clients' share slots stay taken."""
    return _patch(replica_mod.PoEReplica, "_settle_executed", lambda self: 0)


def client_ignores_answer_window():
    """A client runs more than ANSWER_WINDOW messages past its oldest undecided one, so the
    replicas evict an answer it still awaits (swarm seed 9012)."""
    return _patch(client_mod, "ANSWER_WINDOW", 1 << 40)


def client_ids_span_window():
    """A client has ids in flight spanning the kv's exactly-once window: a message it awaits
    can be executed STALE (decision 75)."""
    return _patch(client_mod, "KV_WINDOW", 1 << 40)


_CORRUPTION_TEST = ("tests/storage/test_corruption.py::"
                    "test_a_flipped_byte_in_the_wal_stops_the_replica_naming_the_file_and_the_repair")
_SURVIVE = "tests/sim/test_proofs_survive.py::"
_SUSPICION = "tests/protocol/test_suspicion.py::"
_EXECUTED = "tests/protocol/test_executed_without_inform.py::"
_CLASS1 = _SURVIVE + "test_a_proven_batch_survives_a_view_whose_votes_are_lost"
_CLASS2 = _SURVIVE + "test_a_revived_old_certificate_finds_its_batch_body"
_CLASS4A = _SURVIVE + "test_a_new_primary_restarted_from_its_store_still_knows_its_nv_propose"
_CLASS4B = _SURVIVE + "test_a_power_cut_just_after_the_nv_propose_reached_one_replica"
# mutant -> {protocol: the tests (pytest node ids, from the repository root) of which one
# must fail with it, all passing without it}
MUTANT_TESTS = {
    "corruption-check-skipped": {"poe": (_CORRUPTION_TEST + "[4-mac-poe]",),
                                 "pbft": (_CORRUPTION_TEST + "[4-mac-pbft]",)},
    "evidence-cleared-on-new-view": {"poe": (_CLASS1 + "[mac-poe-4-lost]",),
                                     "pbft": (_CLASS1 + "[mac-pbft-4-lost]",)},
    "bodies-of-dropped-positions-discarded": {"poe": (_CLASS2 + "[4]",)},
    "fetch-only-from-current-slot": {"poe": (_CLASS2 + "[4]",)},
    "nv-propose-not-persisted": {"poe": (_CLASS4A + "[ts-poe-4]", _CLASS4B + "[mac-poe-4]"),
                                 "pbft": (_CLASS4A + "[mac-pbft-4]",)},
    "certify-unauthenticated": {"poe": (
        _SUSPICION + "test_a_keyless_certify_flood_naming_the_primary_costs_nothing_and_"
                     "suspects_no_one",)},
    "unserved-on-any-retry": {"poe": (
        _SUSPICION + "test_a_client_retrying_an_answered_message_forever_moves_no_view",)},
    "no-client-share": {"poe": (
        _SUSPICION + "test_one_client_gets_its_share_of_the_primary_s_queue_and_no_more",)},
    "executed-request-waited-for": {"poe": (
        _SUSPICION + "test_an_executed_message_whose_answer_was_evicted_is_not_waited_for",)},
    "checkpoint-unauthenticated": {"poe": (
        "tests/protocol/test_replica_inputs.py::test_hostile_input_is_dropped_counted_and_"
        "changes_nothing[ts-CHECKPOINT without a MAC]",)},
    "one-early-support-counts": {"poe": (
        _SUSPICION + "test_one_early_support_for_a_far_position_is_not_progress_owed",)},
    "vc-request-entries-unbounded": {"poe": (
        _SUSPICION + "test_a_vc_request_with_more_entries_than_a_correct_replica_reports_is_"
                     "dropped",)},
    "timeout-never-backs-off": {
        "poe": ("tests/sim/test_slow_network.py::test_a_slow_synchronous_network_settles_"
                "after_a_few_view_changes[ts-poe-4]",),
        "pbft": ("tests/sim/test_slow_network.py::test_a_slow_synchronous_network_settles_"
                 "after_a_few_view_changes[mac-pbft-4]",)},
    "new-view-not-offered": {
        "poe": ("tests/sim/test_partitions.py::test_next_primary_deaf_while_the_old_one_is_"
                "dead[PoE-TS-7-with-crash]",),
        "pbft": ("tests/sim/test_partitions.py::test_next_primary_deaf_while_the_old_one_is_"
                 "dead[PBFT-7-with-crash]",)},
    "client-port-hands-over": {"poe": (
        "tests/runtime/test_client_routes.py::test_a_live_connection_cannot_be_taken_over_and_"
        "routes_follow_authentication",)},
    "forwarded-waits-past-share": {"poe": (
        _SUSPICION + "test_a_forwarded_message_of_a_client_over_its_share_is_not_waited_for",)},
    "base-from-replica": {"poe": (
        "tests/storage/test_store.py::test_a_transfer_base_is_the_actions_own_proof_whatever_"
        "the_turn_did_next",)},
    "pending-not-settled": {"poe": (
        _EXECUTED + "test_a_key_the_primary_proposed_leaves_pending_when_its_position_comes_by_"
                    "transfer[ts]",)},
    "client-ignores-answer-window": {"poe": (
        _EXECUTED + "test_a_client_sends_no_message_beyond_its_answer_window",)},
    "client-ids-span-window": {"poe": (
        "tests/protocol/test_pipelined_client_window.py::test_a_client_keeps_the_ids_it_"
        "awaits_inside_the_exactly_once_window",)},
}

MUTANTS = {                      # PoE (the default protocol)
    "client-f+1": client_accepts_f_plus_1,
    "quorum-2f": certificate_from_2f,
    "rollback-skipped": rollback_skipped,
    "recertification-skipped": recertification_skipped,
    "inform-after-vc-request": inform_after_vc_request,
    "watermark-off-by-one": watermark_off_by_one,
    "stable-not-durable": stable_not_durable,
    "replies-not-durable": replies_not_durable,
    "base-from-replica": base_from_replica,
    "votes-not-durable": votes_not_durable,
    "corruption-check-skipped": corruption_check_skipped,
    "evidence-cleared-on-new-view": evidence_cleared_on_new_view,
    "bodies-of-dropped-positions-discarded": bodies_of_dropped_positions_discarded,
    "fetch-only-from-current-slot": fetch_only_from_current_slot,
    "nv-propose-not-persisted": nv_propose_not_persisted,
    "certify-unauthenticated": certify_unauthenticated,
    "unserved-on-any-retry": unserved_on_any_retry,
    "no-client-share": no_client_share,
    "forwarded-waits-past-share": forwarded_waits_past_share,
    "executed-request-waited-for": executed_request_waited_for,
    "checkpoint-unauthenticated": checkpoint_unauthenticated,
    "one-early-support-counts": one_early_support_counts,
    "vc-request-entries-unbounded": vc_request_entries_unbounded,
    "timeout-never-backs-off": timeout_never_backs_off,
    "new-view-not-offered": new_view_not_offered,
    "client-port-hands-over": client_port_hands_over,
    "pending-not-settled": pending_not_settled,
    "client-ignores-answer-window": client_ignores_answer_window,
    "client-ids-span-window": client_ids_span_window,
}
PBFT_MUTANTS = {                 # --protocol pbft
    "pbft-client-f": pbft_client_accepts_f,
    "pbft-execute-at-prepared": pbft_execute_at_prepared,
    "quorum-2f": certificate_from_2f,
    "inform-after-vc-request": inform_after_vc_request,
    "watermark-off-by-one": watermark_off_by_one,
    "pbft-commits-not-restored": pbft_commits_not_restored,
    "stable-not-durable": stable_not_durable,
    "corruption-check-skipped": corruption_check_skipped,
    "evidence-cleared-on-new-view": evidence_cleared_on_new_view,
    "nv-propose-not-persisted": nv_propose_not_persisted,
    "timeout-never-backs-off": timeout_never_backs_off,
    "new-view-not-offered": new_view_not_offered,
}
# not in the PBFT list: replies-not-durable (shared restore code, caught under PoE; PBFT's
# f+1 clients have their answers before a power cut in the first 500 seeds)


def outcome(seed: int, protocol: str = "poe") -> tuple[bool, str]:
    """(failed?, first problem) of one seed with primary faults allowed."""
    try:
        result = swarm.run_case(swarm.draw(seed, True, protocol))
    except Exception as exc:                      # a mutant may also crash the protocol
        return True, f"exception: {type(exc).__name__}: {exc}"
    if result.violations:
        return True, result.violations[0]
    return False, ""


def test_fails(nodes) -> bool:
    """Run the named tests in this process (the mutant, if any, applied): did one fail?"""
    import pytest

    root = Path(__file__).resolve().parent.parent
    return pytest.main([*(str(root / node) for node in nodes), "-q", "-p", "no:cacheprovider",
                        "--no-header", "--tb=line", "-W", "ignore"]) != 0


def caught_by_test(name: str, mutants, protocol: str):
    """(1, 0, problem) if the mutant's named test fails with it and passes without it."""
    nodes = MUTANT_TESTS[name][protocol]
    undo = mutants[name]()
    try:
        failed = test_fails(nodes)
    finally:
        undo()
    if failed and not test_fails(nodes):
        return (1, 0, " or ".join(node.split("::")[-1] for node in nodes) + " fails")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=500, help="seeds per mutant at most")
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--protocol", choices=("poe", "pbft"), default="poe")
    parser.add_argument("--only", nargs="*", choices=sorted({*MUTANTS, *PBFT_MUTANTS}))
    args = parser.parse_args(argv)
    mutants = PBFT_MUTANTS if args.protocol == "pbft" else MUTANTS
    names = args.only or list(mutants)
    unknown = [n for n in names if n not in mutants]
    if unknown:
        parser.error(f"not a {args.protocol} mutant: {', '.join(unknown)}")
    baseline: dict[int, bool] = {}
    rows = []
    started = time.perf_counter()
    for name in names:
        if name in MUTANT_TESTS:
            caught = caught_by_test(name, mutants, args.protocol)
            rows.append((name, caught))
            status = f"caught by a named test: {caught[2][:90]}" if caught \
                else "NOT caught by its named test"
            print(f"{name:26s} {status}", flush=True)
            continue
        undo = mutants[name]()
        caught = None
        try:
            for i, seed in enumerate(range(args.start, args.start + args.seeds), 1):
                failed, problem = outcome(seed, args.protocol)
                if not failed:
                    continue
                undo()                            # does the correct code fail there too?
                if seed not in baseline:
                    baseline[seed] = outcome(seed, args.protocol)[0]
                undo = mutants[name]()            # and back to the mutant
                if not baseline[seed]:
                    caught = (i, seed, problem)
                    break
        except Exception:
            traceback.print_exc()
        finally:
            undo()
        rows.append((name, caught))
        status = f"caught after {caught[0]} seeds (seed {caught[1]}): {caught[2][:90]}" \
            if caught else f"NOT caught in {args.seeds} seeds"
        print(f"{name:26s} {status}", flush=True)
    missed = [n for n, c in rows if c is None]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} mutants caught "
          f"({args.protocol}; {time.perf_counter() - started:.0f} s wall; seeds from "
          f"{args.start}, primary "
          "faults on; a catch counts only where the unmutated code passes that seed)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
