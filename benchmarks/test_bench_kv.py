"""kv kernel against a plain-Python executor doing the same work, measured in the same run.

Workload (YCSB-A-like): 10,000 preloaded records of 100 bytes; a batch is 100 single-request
client messages from 100 clients, 50 % READ and 50 % UPDATE (100-byte values) on uniformly
drawn keys; every batch carries the next request id of each client, so nothing is a
duplicate. Both executors get the same validated client-message bytes and do the same
work: walk the messages, check the exactly-once window, execute, record undo entries and
encode the results in INFORM-entry layout (their outputs are compared byte for byte).
Undo is finalized every 64 batches outside the timed region (a checkpoint period).
Acceptance of the foundation issue: the C kernel is at least 5x faster.
"""
import random
import struct

import pytest

from paired import report_paired

from poe._core import codec, kv

RECORDS = 10_000
VALUE_BYTES = 100
BATCH_REQUESTS = 100
CHECKPOINT_PERIOD = 64
ROUNDS = 2000
CONFIG = {"records": RECORDS, "value_bytes": VALUE_BYTES, "requests_per_batch": BATCH_REQUESTS,
          "mix": "50% READ / 50% UPDATE, uniform keys", "clients": BATCH_REQUESTS,
          "finalize_every": CHECKPOINT_PERIOD}

CM = struct.Struct("<IHH")
OP = struct.Struct("<QQBH")
RES_CM = struct.Struct("<IIH")
RES_OP = struct.Struct("<QBH")
WINDOW = kv.WINDOW                  # the exactly-once window, as the kernel keeps it
MASKW = 2**WINDOW - 1


class Workload:
    """An endless stream of batches; batch n holds request id n of every client."""

    def __init__(self, seed=11):
        self.rng = random.Random(seed)
        self.n = 0

    def next_batch(self):
        self.n += 1
        messages = []
        for c in range(BATCH_REQUESTS):
            key = self.rng.randrange(RECORDS)
            if self.rng.random() < 0.5:
                op = (self.n, key, codec.OP_READ, b"")
            else:
                op = (self.n, key, codec.OP_UPDATE, self.rng.randbytes(VALUE_BYTES))
            messages.append(codec.pack_client_message(1000 + c, [op]) + bytes(64))
        return codec.Batch.from_messages(messages)


class PyKV:
    """The same state machine in plain Python: dict store, client table, undo, results."""

    def __init__(self):
        self.records = {}
        self.clients = {}
        self.undo = {}
        self.executed_seq = 0

    def execute(self, seq, raw, count):
        if seq != self.executed_seq + 1:
            raise ValueError("execution is in order")
        records, clients = self.records, self.clients
        undo = []
        out = bytearray()
        offsets = []
        pos = 0
        for idx in range(count):
            client, nops, _ = CM.unpack_from(raw, pos)
            pos += CM.size
            offsets.append(len(out))
            out += RES_CM.pack(client, idx, nops)
            state = clients.get(client)
            if state is None:
                state = clients[client] = [0, 0]
                undo.append(("client-absent", client))
            else:
                undo.append(("client", client, state[0], state[1]))
            for _ in range(nops):
                t, key, code, vlen = OP.unpack_from(raw, pos)
                pos += OP.size
                value = raw[pos:pos + vlen]
                pos += vlen
                max_t, bitmap = state
                result = b""
                if t > max_t:
                    d = t - max_t
                    state[0], state[1] = t, ((bitmap << d) | 1) & MASKW if d < WINDOW else 1
                elif max_t - t < WINDOW:
                    if bitmap >> (max_t - t) & 1:
                        out += RES_OP.pack(t, codec.ST_DUPLICATE, 0)
                        continue
                    state[1] = bitmap | (1 << (max_t - t))
                else:
                    out += RES_OP.pack(t, codec.ST_STALE, 0)
                    continue
                old = records.get(key)
                status = codec.ST_OK
                if code == codec.OP_READ:
                    if old is None:
                        status = codec.ST_NOT_FOUND
                    else:
                        result = old
                elif code == codec.OP_INSERT:
                    if old is None:
                        records[key] = value
                        undo.append(("absent", key))
                    else:
                        status = codec.ST_EXISTS
                elif old is None:
                    status = codec.ST_NOT_FOUND
                else:
                    records[key] = value
                    undo.append(("value", key, old))
                    if code == codec.OP_RMW:
                        result = old
                out += RES_OP.pack(t, status, len(result))
                out += result
            pos += codec.SIG_SIZE
        offsets.append(len(out))
        self.undo[seq] = undo
        self.executed_seq = seq
        return bytes(out), offsets

    def finalize(self, k):
        for seq in [s for s in self.undo if s <= k]:
            del self.undo[seq]


def preloaded_c():
    store = kv.KVStore(seed=5, capacity=RECORDS)
    store.load_sequential(RECORDS, VALUE_BYTES, seed=1)
    return store


def preloaded_python(c_store):
    py = PyKV()
    py.records = {k: c_store.get(k) for k in range(RECORDS)}
    return py


def c_runner():
    store, work = preloaded_c(), Workload()

    def setup():
        if store.executed_seq % CHECKPOINT_PERIOD == 0:
            store.finalize(store.executed_seq)
        return (store.executed_seq + 1, work.next_batch()), {}

    return store, setup


def python_runner():
    py, work = preloaded_python(preloaded_c()), Workload()

    def setup():
        if py.executed_seq % CHECKPOINT_PERIOD == 0:
            py.finalize(py.executed_seq)
        b = work.next_batch()
        return (py.executed_seq + 1, bytes(b.raw), len(b)), {}

    return py, setup


def test_python_baseline_is_the_same_work():
    store, py, work = preloaded_c(), preloaded_python(preloaded_c()), Workload()
    for seq in range(1, 40):
        b = work.next_batch()
        res = store.execute(seq, b)
        buffer, offsets = py.execute(seq, bytes(b.raw), len(b))
        assert res.buffer == buffer
        assert [res.message_results(i).nbytes for i in range(len(res))] == [
            offsets[i + 1] - offsets[i] for i in range(len(res))]
    assert all(store.get(k) == py.records[k] for k in range(RECORDS))


@pytest.mark.benchmark(group="kv-execute")
def test_kv_execute_c(benchmark):
    store, setup = c_runner()
    benchmark.extra_info.update(CONFIG)
    res = benchmark.pedantic(store.execute, setup=setup, rounds=ROUNDS, iterations=1)
    assert len(res) == BATCH_REQUESTS


@pytest.mark.benchmark(group="kv-execute")
def test_kv_execute_python(benchmark):
    py, setup = python_runner()
    benchmark.extra_info.update(CONFIG)
    _, offsets = benchmark.pedantic(py.execute, setup=setup, rounds=ROUNDS, iterations=1)
    assert len(offsets) == BATCH_REQUESTS + 1


@pytest.mark.benchmark(group="kv-rollback")
def test_kv_rollback_one_batch(benchmark):
    store, work = preloaded_c(), Workload()

    def setup():
        store.execute(store.executed_seq + 1, work.next_batch())
        return (store.executed_seq - 1,), {}

    benchmark.extra_info.update(CONFIG)
    before = store.state_digest()
    benchmark.pedantic(store.rollback_to, setup=setup, rounds=ROUNDS, iterations=1)
    assert store.executed_seq == 0 and store.state_digest() == before


@pytest.mark.benchmark(group="kv-digest")
def test_kv_state_digest_after_one_batch(benchmark):
    store, setup_execute = c_runner()
    store.state_digest()

    def setup():
        args, _ = setup_execute()
        store.execute(*args)
        return (), {}

    benchmark.extra_info.update(CONFIG)
    benchmark.extra_info["sha256_accelerated"] = kv.ACCELERATED_SHA256
    digest = benchmark.pedantic(store.state_digest, setup=setup, rounds=ROUNDS // 4,
                                iterations=1)
    assert len(digest) == 32


# ---------------------------------------------------------------------------------------
# checkpoints (issue 15): what a replica pays at every checkpoint, old against new, on the
# same workload: a checkpoint every 64 batches (3,200 UPDATEs spread over ~96 % of the 1,024
# digest buckets), the previous checkpoint finalized; the 64 batches run outside the timer.
CHECKPOINT_ROUNDS = 60


def checkpoint_runner():
    """A store and a setup that executes the next 64 batches, then finalizes the previous
    checkpoint (as a stable checkpoint would)."""
    store, work = preloaded_c(), Workload()
    store.capture()

    def setup():
        last = store.executed_seq
        for _ in range(CHECKPOINT_PERIOD):
            store.execute(store.executed_seq + 1, work.next_batch())
        store.finalize(last)
        return (), {}

    return store, setup


@pytest.mark.benchmark(group="kv-checkpoint")
def test_kv_checkpoint_eager_snapshot(benchmark):
    """The code replaced: state digest + snapshot() encoded at every checkpoint."""
    store, setup = checkpoint_runner()

    def checkpoint():
        return store.state_digest(), store.snapshot()

    benchmark.extra_info.update(CONFIG)
    digest, snap = benchmark.pedantic(checkpoint, setup=setup, rounds=CHECKPOINT_ROUNDS,
                                      iterations=1)
    assert snap[40:72] == digest and len(snap) > RECORDS * VALUE_BYTES


@pytest.mark.benchmark(group="kv-checkpoint")
def test_kv_checkpoint_capture(benchmark):
    """The new checkpoint: capture() (incremental digest, nothing encoded)."""
    store, setup = checkpoint_runner()

    def checkpoint():
        return store.capture(), store.state_digest()

    benchmark.extra_info.update(CONFIG)
    captured, digest = benchmark.pedantic(checkpoint, setup=setup, rounds=CHECKPOINT_ROUNDS,
                                          iterations=1)
    assert captured == digest and store.captured[-1] == store.executed_seq


@pytest.mark.benchmark(group="kv-checkpoint")
def test_kv_checkpoint_snapshot_at_when_asked(benchmark):
    """What a STATE-REQ or the store pays, only when it asks: snapshot_at(k) of the last
    checkpoint after 32 more batches (its undo entries overlay the current state)."""
    store, work = preloaded_c(), Workload()
    seq = [0]

    def setup():
        for _ in range(CHECKPOINT_PERIOD):
            store.execute(store.executed_seq + 1, work.next_batch())
        store.finalize(seq[0])
        seq[0] = store.executed_seq
        store.capture()
        for _ in range(CHECKPOINT_PERIOD // 2):
            store.execute(store.executed_seq + 1, work.next_batch())
        return (seq[0],), {}

    benchmark.extra_info.update(CONFIG)
    snap = benchmark.pedantic(store.snapshot_at, setup=setup, rounds=CHECKPOINT_ROUNDS // 2,
                              iterations=1)
    assert kv.KVStore.restore(snap).executed_seq == seq[0]


@pytest.mark.benchmark(group="kv-checkpoint-digest")
def test_kv_checkpoint_digest_full(benchmark):
    """The state digest recomputed from scratch at a checkpoint (every bucket rehashed)."""
    store, setup = checkpoint_runner()
    benchmark.extra_info.update(CONFIG)
    digest = benchmark.pedantic(store.state_digest_full, setup=setup,
                                rounds=CHECKPOINT_ROUNDS, iterations=1)
    assert digest == store.state_digest()


@pytest.mark.benchmark(group="kv-checkpoint-digest")
def test_kv_checkpoint_digest_incremental(benchmark):
    """The incremental state digest at a checkpoint: the dirty buckets only (after 64
    batches ~96 % of them; after one batch, test_kv_state_digest_after_one_batch, ~5 %)."""
    store, setup = checkpoint_runner()
    benchmark.extra_info.update(CONFIG)
    digest = benchmark.pedantic(store.state_digest, setup=setup, rounds=CHECKPOINT_ROUNDS,
                                iterations=1)
    assert digest == store.state_digest_full()


@pytest.mark.benchmark(group="kv-checkpoint-paired")
def test_kv_checkpoint_paired_old_vs_new(benchmark):
    """Old and new checkpoint paths on twin stores fed the same batches, measured in the
    same round (the old one timed in the setup, just before the new one), so that load
    from other processes hits both alike: the median of the per-round ratios
    old / new is recorded in extra_info['paired_ratio_median']."""
    import time

    new, old, work = preloaded_c(), preloaded_c(), Workload()
    new.capture()
    old_times = []

    def setup():
        last = new.executed_seq
        for _ in range(CHECKPOINT_PERIOD):
            b = work.next_batch()
            new.execute(new.executed_seq + 1, b)
            old.execute(old.executed_seq + 1, b)
        new.finalize(last)
        old.finalize(last)
        t = time.perf_counter()
        old.state_digest()
        old.snapshot()                       # the old checkpoint: digest + eager snapshot
        old_times.append(time.perf_counter() - t)
        return (), {}

    benchmark.extra_info.update(CONFIG)
    digest = benchmark.pedantic(new.capture, setup=setup, rounds=CHECKPOINT_ROUNDS,
                                iterations=1)
    assert digest == old.state_digest()
    assert new.snapshot_at(new.executed_seq) == old.snapshot()
    report_paired(benchmark, old_times, "checkpoint old (digest + snapshot)", "new (capture)")
