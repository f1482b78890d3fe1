"""Byzantine replicas and clients (poe.sim.adversary) against the real protocol (issue #5).

Each test installs one adversary in a small cluster and asserts three things: the run is
safe (every checker: agreement, proofs of execution, linearizability, bounds), the clients
complete, and the adversary really misbehaved (its own counters, and the drop reasons or
statistics it caused at the honest replicas and clients).
"""
from collections import Counter

import pytest

from poe._core import codec
from poe.protocol.config import ProtocolConfig
from poe.sim import adversary
from poe.sim.cluster import SimCluster, Workload


def make(n=4, mode="ts", seed=1, clients=4, byzantine_clients=0, **cfg):
    cfg.setdefault("batch_timeout_s", 0.01)
    cfg.setdefault("retransmit_timeout_s", 0.1)
    config = ProtocolConfig(n=n, mode=mode, **cfg)
    workload = Workload(ops_per_message=5, outstanding=1, retry_timeout_s=0.3,
                        retry_timeout_max_s=2.0)
    return SimCluster(config, clients=clients, seed=seed, workload=workload,
                      byzantine_clients=byzantine_clients)


def honest(sim, bad=(1,)):
    return [sim.replicas[r] for r in range(sim.n) if r not in bad]


def drops(sim, bad):
    total = Counter()
    for rep in honest(sim, bad):
        total.update(rep.drops)
    return total


def stats(sim, bad):
    total = Counter()
    for rep in honest(sim, bad):
        total.update(rep.stats)
    return total


def survive(sim, requests=2_000, time_limit_s=120.0):
    result = sim.run(requests, time_limit_s=time_limit_s)
    assert result.violations == [], result.violations
    assert result.requests >= requests and result.outcome_unknown == 0, result
    assert sim.checker.history_ops_checked > 0           # the history was really checked
    assert sim.checker.bound_samples > 0
    return result


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_equivocating_primary_towards_f_replicas(mode):
    sim = make(mode=mode)
    eq = adversary.install(sim, 0, "equivocate", seed=2, victims=[3])
    survive(sim)
    assert eq.counters["equivocated"] > 10
    if mode == "ts":     # the victim holds the other batch, sees the certificate, fetches
        assert sim.replicas[3].stats["fetch-for-certificate"] > 0
    else:                # the victim's SUPPORTs name the other batch
        assert drops(sim, [0])["support-wrong-digest"] > 0
    assert 0 in sim.checker.byzantine


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_equivocating_primary_towards_half_the_replicas_is_safe(mode):
    sim = make(mode=mode)
    eq = adversary.install(sim, 0, "equivocate", seed=2)
    assert eq.victims == {1, 2}
    sim.start(500)
    sim.run_for(3.0)
    result = sim.finish()
    assert result.violations == [], result.violations
    assert eq.counters["equivocated"] > 0
    # no batch may be executed by a correct replica unless nf replicas supported it
    assert all(len(c.replicas) >= sim.config.nf for _, c in sim.completions)


def test_hidden_certificates_are_revealed_late():
    sim = make(mode="ts")
    hide = adversary.install(sim, 0, "hide-certificate", seed=3, reveal_after=0.3)
    survive(sim)
    assert hide.counters["certify-hidden"] > 0
    assert hide.counters["certify-revealed"] > 0
    assert hide.counters["fetch-reply-stripped"] > 0
    # a stripped reply carries the body of the digest the PROPOSE fixed: bound as a body
    # only (§4.11); the slot commits once the revealed certificate arrives
    assert all(r.stats["fetch-adopted"] > 0 for r in sim.replicas[1:])


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_withholding_backup(mode):
    sim = make(mode=mode)
    w = adversary.install(sim, 2, "withhold", seed=4, silent_to=[0],
                          kinds=[codec.CHECKPOINT], clients=True)
    survive(sim)
    assert w.counters["withheld"] > 0
    assert all(2 not in c.replicas for _, c in sim.completions)   # never informed anyone


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_primary_withholding_proposals_from_one_replica(mode):
    sim = make(mode=mode)
    w = adversary.install(sim, 0, "withhold", seed=4, silent_to=[3], kinds=[codec.PROPOSE])
    survive(sim)
    assert w.counters["withheld"] > 0
    victim = sim.replicas[3]
    assert victim.stats["fetch-adopted"] > 0
    sim.run_for(1.0)
    assert sim.finish().violations == []
    if mode == "ts":     # it sees the certificates and fetches the certified batches
        assert victim.k_exec == sim.replicas[1].k_exec
    else:                # without the PROPOSE it cannot vote: it lags, up to checkpoints
        assert victim.k_exec >= victim.checkpoints.stable.seq > 0


def test_ignoring_incoming_kinds():
    sim = make(mode="ts")
    w = adversary.install(sim, 2, "withhold", seed=4, ignore_kinds=[codec.PROPOSE])
    survive(sim)
    assert w.counters["ignored"] > 0


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_corrupt_shares_macs_and_checkpoint_signatures(mode):
    sim = make(mode=mode, checkpoint_period=4, window=16)
    c = adversary.install(sim, 2, "corrupt", seed=5, p=0.5)
    survive(sim)
    d = drops(sim, [2])
    assert d["bad-mac"] > 0 and c.counters["mac-corrupted"] > 0
    assert d["checkpoint-bad-signature"] > 0 and c.counters["checkpoint-corrupted"] > 0
    if mode == "ts":
        assert d["support-bad-share"] > 0 and c.counters["share-corrupted"] > 0


def test_primary_with_corrupt_certificates():
    sim = make(mode="ts")
    c = adversary.install(sim, 0, "corrupt", seed=5, parts=["cert"], p=0.5)
    survive(sim)
    assert c.counters["cert-corrupted"] > 0
    assert drops(sim, [0])["certify-invalid"] > 0


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_replays_of_old_frames(mode):
    sim = make(mode=mode)
    rp = adversary.install(sim, 2, "replay", seed=6, burst=10)
    survive(sim)
    assert rp.counters["replayed"] > 100
    d = drops(sim, [2])
    assert d["bad-mac"] > 0              # frames MACed for the replayer, sent elsewhere
    assert sum(d.values()) - d["bad-mac"] > 0   # and stale frames, recognised as such


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_garbled_bytes_go_through_the_real_codec(mode):
    sim = make(mode=mode)
    g = adversary.install(sim, 1, "garble", seed=7, p=0.5)
    survive(sim)
    assert g.counters["garbled"] > 50
    d = drops(sim, [1])
    client_drops = sum((c.drops for c in sim.clients), Counter())
    assert d["malformed"] + d["bad-mac"] + client_drops["malformed"] \
        + client_drops["bad-mac"] > 0


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_informs_with_wrong_results_never_make_a_proof(mode):
    sim = make(mode=mode)
    w = adversary.install(sim, 3, "wrong-inform", seed=8)
    survive(sim)
    assert w.counters["inform-altered"] > 100
    assert all(3 not in c.replicas for _, c in sim.completions)


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_forged_and_stale_view_change_messages(mode):
    sim = make(mode=mode)
    fv = adversary.install(sim, 1, "forge-view-change", seed=9)
    survive(sim)
    for what in ("vc-forged", "vc-wrong-view", "nv-forged"):
        assert fv.counters[what] > 5, fv.counters
    d = drops(sim, [1])
    assert sum(v for k, v in d.items() if "vc" in k or "nv" in k or "view" in k) > 0, d
    # one replica alone can move nobody to another view
    assert all(rep.view == 0 for rep in honest(sim, [1]))
    assert sim.checker.rollbacks == 0


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_small_mutations_resealed_with_own_keys(mode):
    sim = make(mode=mode, checkpoint_period=4, window=16)
    m = adversary.install(sim, 2, "mutate", seed=10, p=0.5)
    survive(sim)
    kinds = {k for k, v in m.counters.items() if v and k.startswith("mutated-")}
    assert {"mutated-view+1", "mutated-seq+1"} <= kinds, m.counters
    d = drops(sim, [2])
    assert d["support-wrong-view"] + d["support-wrong-digest"] + d["support-duplicate"] > 0


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_twins_of_a_backup(mode):
    sim = make(mode=mode)
    # both copies hear the primary; copy 0 talks to replica 1, copy 1 to replica 3
    tw = adversary.install(sim, 2, "twins", seed=11, group=[0, 1], other_group=[0, 3])
    survive(sim)
    assert tw.counters["to-copy-0"] > 0 and tw.counters["to-copy-1"] > 0
    assert all(copy.k_exec > 0 for copy in tw.copies)
    d = drops(sim, [2])
    if mode == "ts":     # the primary gets two SUPPORTs from replica 2 for each slot
        assert d["support-duplicate"] + d["support-late"] > 0
    else:                # each copy's all-to-all SUPPORTs reach only its own part
        assert tw.counters["split"] > 0 and d["support-duplicate"] > 0


@pytest.mark.parametrize("mode", ["ts", "mac"])
def test_client_signing_two_payloads_for_one_request_id(mode):
    sim = make(mode=mode, byzantine_clients=1)
    bc = adversary.install_client(sim, "double-payload", seed=12)
    survive(sim)
    assert bc.counters["pairs"] > 10
    s, d = stats(sim, ()), drops(sim, ())
    assert s["request-forwarded"] + s["reply-from-cache"] + d["request-pending"] > 0
    # for each pair, the correct replicas executed one payload for the shared request id
    ledger = sim.checker._final_ledger(range(4))
    executed = Counter()
    for _, batch, results in ledger:
        for i in range(len(batch)):
            if batch.client(i) == bc.id:
                for t, status, _ in results.ops(i):
                    if status not in (codec.ST_DUPLICATE, codec.ST_STALE):
                        executed[t] += 1
    assert executed and max(executed.values()) == 1
    assert bc.counters["informs"] > 0


def test_flooding_client_is_bounded_by_the_pending_limit():
    sim = make(mode="ts", byzantine_clients=1, pending_requests_max=8)
    fl = adversary.install_client(sim, "flood", seed=13, burst=5, replays=3)
    survive(sim, 1_000)
    assert fl.counters["flooded"] > 500 and fl.counters["replayed"] > 100
    assert drops(sim, ())["primary-overloaded"] > 0
    assert all(len(r.pending) <= 8 for r in sim.replicas)


def test_stop_ends_misbehaviour():
    sim = make(mode="ts")
    g = adversary.install(sim, 1, "garble", seed=7, p=1.0)
    sim.start(300)
    sim.run_for(0.5)
    garbled = g.counters["garbled"]
    assert garbled > 0
    sim.stop_faults(10.0)
    result = sim.run(300)
    assert result.violations == []
    assert g.counters["garbled"] == garbled
