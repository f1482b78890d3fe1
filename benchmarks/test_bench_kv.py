"""kv kernel against a plain-Python executor doing the same work, measured in the same run.

Workload (YCSB-A-like): 10,000 preloaded records of 100 bytes; a batch is 100 single-request
client messages from 100 clients, 50 % READ and 50 % UPDATE (100-byte values) on uniformly
drawn keys; every batch carries the next request id of each client, so nothing is a
duplicate. Both executors get the same validated client-message bytes and do the same
work: walk the messages, check the exactly-once window, execute, record undo entries and
encode the results in INFORM-body layout (their outputs are compared byte for byte).
Undo is finalized every 64 batches outside the timed region (a checkpoint period).
Acceptance of the foundation issue: the C kernel is at least 5x faster.
"""
import random
import struct

import pytest

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
MASK64 = 2**64 - 1


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
                    state[0], state[1] = t, ((bitmap << d) | 1) & MASK64 if d < 64 else 1
                elif max_t - t < 64:
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
        assert [res.inform_body(i).nbytes for i in range(len(res))] == [
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
