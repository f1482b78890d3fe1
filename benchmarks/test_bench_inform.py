"""INFORM work for one batch: one INFORM per client message (the old path) against one per
client per batch (issue #15), measured in the same run, in the same rounds.

Workload: a batch of 200 requests from 8 clients, 25 requests each, sent as 5 messages of 5
requests (40 client messages, interleaved round-robin as a primary would order arrivals);
YCSB-A-like operations on preloaded 100-byte records, n = 4 (nf = 3).

* replica: the INFORM work after executing the batch — group, encode, MAC, reply cache —
  of ``PoEReplica.inform`` (new) against ``old_inform`` below, a copy of the loop it
  replaced (one encode and one MAC per message).
* client: every INFORM the 8 clients need to decide the 40 messages (nf = 3 replicas'
  frames): decode, MAC verify, matching — ``PoEClient.on_message`` (new, 24 frames) against
  ``OldClient.on_message`` below, a copy of the per-message rule it replaced (120 frames).

The old path's frames are built with the current codec as single-entry INFORMs: the same C
work per frame as the old ``encode_inform`` / ``decode`` (frame, one copy, the validation
walk), two bytes longer (the entry count). Both paths must produce the same results (each
message: same view, seq, idx, results, proof replicas). The old path is timed in the
setup just before the new one in each round, so load from other processes hits both alike;
the median per-round ratio old / new is extra_info['paired_ratio_median'].

Run: pytest benchmarks/test_bench_inform.py --benchmark-columns=min,median,rounds -s
"""
from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from paired import report_paired
from poe._core import codec
from poe._core.codec import Batch
from poe._core.kv import KVStore
from poe.crypto.base import client as client_party, replica as replica_party
from poe.crypto.fake import FakeCrypto
from poe.crypto.statements import request_statement
from poe.protocol.actions import Reply
from poe.protocol.config import ProtocolConfig
from poe.protocol.poe.client import Completed, PoEClient, _Pending
from poe.protocol.poe.replica import PoEReplica, Slot

N = 4
CLIENTS = 8
PER_CLIENT = 25
PER_MESSAGE = 5
RECORDS = 10_000
VALUE = 100
ROUNDS = 200
CONFIG = {"requests": CLIENTS * PER_CLIENT, "clients": CLIENTS,
          "messages": CLIENTS * PER_CLIENT // PER_MESSAGE, "ops_per_message": PER_MESSAGE,
          "n": N}


# ------------------------------------------------------------------------- the old paths


def old_inform(replica: PoEReplica, k: int, slot: Slot, results, out: list) -> None:
    """The replaced ``PoEReplica.inform``: INFORM(v, k, idx, c, results) to the client of
    every message in the batch, one encode and one MAC per message."""
    batch = slot.batch
    macs = replica._macs
    view = replica.view
    pending = replica.pending
    forwarded = replica.forwarded
    for i in range(len(batch)):
        cid = batch.client(i)
        key = (cid, batch.first_request_id(i))
        pending.discard(key)
        if forwarded:
            replica.watch.executed(key)
        if results.all_duplicate(i):
            cached = replica.replies.get(key)
            if cached is not None:
                out.append(Reply(cid, cached[2]))
            continue
        frame = codec.encode_inform_results(
            replica.id, view, k, [results.message_results(i)],
            [bytes(batch.signature(i)[:codec.INFORM_TAG_SIZE])])
        sealed = frame + macs.mac(replica._client(cid), frame)
        replica.replies.put(key, view, k, sealed)
        out.append(Reply(cid, sealed))


class OldClient(PoEClient):
    """The replaced per-message rule: an INFORM answers one message (its only entry)."""

    def on_message(self, data: bytes, now: float) -> list:
        m = self._authentic_inform(data)        # unchanged: decode, MAC, ours
        if m is None:
            return []
        handle, count, entry = m.votes()[0]
        p = self.pending.get(handle)
        if p is None:
            self.drops["inform-after-decision"] += 1
            return []
        if count != len(p.ids):
            self.drops["wrong-request-ids"] += 1
            return []
        return self._vote(m, 0, handle, p, entry, now)     # unchanged: the vote itself


# ------------------------------------------------------------------------- the workload


def _setup():
    config = ProtocolConfig(n=N, mode="mac", batch_size=CLIENTS * PER_CLIENT)
    fc = FakeCrypto(N, CLIENTS, 3, purpose="test")   # real MACs (PairwiseMacKeys)
    rng = random.Random(5)
    per_client = []
    for c in range(CLIENTS):
        signer = fc.suite(client_party(c)).signer
        msgs = []
        for m in range(PER_CLIENT // PER_MESSAGE):
            ops = []
            for j in range(PER_MESSAGE):
                t = 1 + m * PER_MESSAGE + j
                key = rng.randrange(RECORDS)
                if rng.random() < 0.5:
                    ops.append((t, key, codec.OP_READ, b""))
                else:
                    ops.append((t, key, codec.OP_UPDATE, rng.randbytes(VALUE)))
            unsigned = codec.pack_client_message(c, ops)
            msgs.append((tuple(op[0] for op in ops),
                         unsigned + signer.sign(request_statement(unsigned))))
        per_client.append(msgs)
    order = [per_client[c][m] for m in range(PER_CLIENT // PER_MESSAGE) for c in range(CLIENTS)]
    batch = Batch.from_messages([cm for _, cm in order])
    kv = KVStore(seed=1)
    kv.load((i, bytes(VALUE)) for i in range(RECORDS))
    results = kv.execute(1, batch)
    slot = Slot()
    slot.batch = batch
    replicas = [PoEReplica(config, r, fc.suite(replica_party(r))) for r in range(N)]
    return config, fc, batch, results, slot, replicas, order


@pytest.fixture(scope="module")
def workload():
    return _setup()


def _per_message(frames) -> dict:
    """{(client, first t): (view, seq, idx, results)} of INFORM frames."""
    out = {}
    for data in frames:
        m = codec.decode(data)
        for j in range(len(m)):
            key = (m.client, m.request_id(j))
            assert key not in out
            out[key] = (m.view, m.seq, m.index(j), m.results(j))
    return out


# ------------------------------------------------------------------------- benchmarks


@pytest.mark.benchmark(group="inform-replica")
def test_replica_inform_one_batch_old_vs_new(benchmark, workload):
    config, fc, batch, results, slot, replicas, _ = workload
    r = replicas[1]
    old_times = []
    outs = {}

    def setup():
        out: list = []
        t = time.perf_counter()
        old_inform(r, 1, slot, results, out)
        old_times.append(time.perf_counter() - t)
        outs["old"] = out
        new_out: list = []
        outs["new"] = new_out
        return (1, slot, results, new_out), {}

    benchmark.extra_info.update(CONFIG)
    benchmark.pedantic(r.inform, setup=setup, rounds=ROUNDS, iterations=1)
    old, new = outs["old"], outs["new"]
    assert len(old) == len(batch) == 40 and len(new) == CLIENTS
    assert {a.client for a in new} == set(range(CLIENTS))
    assert _per_message(a.data for a in old) == _per_message(a.data for a in new)
    benchmark.extra_info["frames_old"] = len(old)
    benchmark.extra_info["frames_new"] = len(new)
    benchmark.extra_info["bytes_old"] = sum(len(a.data) for a in old)
    benchmark.extra_info["bytes_new"] = sum(len(a.data) for a in new)
    report_paired(benchmark, old_times, "replica INFORM work per batch: old",
                  "new")


@pytest.mark.benchmark(group="inform-client")
def test_client_informs_of_one_batch_old_vs_new(benchmark, workload):
    config, fc, batch, results, slot, replicas, order = workload
    nf = config.nf
    frames = {}
    for kind, inform in (("old", old_inform), ("new", PoEReplica.inform)):
        per_client: dict[int, list] = {c: [] for c in range(CLIENTS)}
        for r in replicas[:nf]:
            out: list = []
            inform(r, 1, slot, results, out)
            for a in out:
                per_client[a.client].append(a.data)
        frames[kind] = per_client
    assert sum(map(len, frames["old"].values())) == nf * len(batch)
    assert sum(map(len, frames["new"].values())) == nf * CLIENTS
    suites = [fc.suite(client_party(c)) for c in range(CLIENTS)]
    old_clients = [OldClient(config, c, suites[c]) for c in range(CLIENTS)]
    new_clients = [PoEClient(config, c, suites[c]) for c in range(CLIENTS)]
    ids: dict[int, list] = {}                 # client -> (request ids, tag) of its messages
    for request_ids, cm in order:
        ids.setdefault(int.from_bytes(cm[:4], "little"), []).append(
            (request_ids, bytes(cm[-64:][:codec.INFORM_TAG_SIZE])))

    def arm(c):
        c.pending = {i[0]: _Pending(b"", i, 0.0, 1e9, 1.0, {}, Counter(), {}, {}, tag=tag)
                     for i, tag in ids[c.id]}

    def run(clients, by_client):
        done = []
        for c in clients:
            for data in by_client[c.id]:
                for a in c.on_message(data, 0.5):
                    if type(a) is Completed:
                        done.append((c.id, a.handle, a.view, a.seq, a.index, a.results,
                                     a.replicas))
        return done

    old_times = []
    outs = {}

    def setup():
        for c in old_clients:
            arm(c)
        t = time.perf_counter()
        outs["old"] = run(old_clients, frames["old"])
        old_times.append(time.perf_counter() - t)
        for c in new_clients:
            arm(c)
        return (new_clients, frames["new"]), {}

    benchmark.extra_info.update(CONFIG)
    new_done = benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    assert len(new_done) == len(batch) == 40
    assert sorted(outs["old"]) == sorted(new_done)
    assert all(d[6] == tuple(range(nf)) for d in new_done)
    assert not any(c.pending for c in new_clients + old_clients)
    report_paired(benchmark, old_times, "client INFORM work per batch (8 clients): old",
                  "new")
