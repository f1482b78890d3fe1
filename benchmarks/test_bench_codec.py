"""Codec against msgpack carrying the same fields, measured in the same run.

msgpack is the baseline the issue names: the same PROPOSE (header fields, 100 client
messages each with its client id, operations and signature, and the MAC) and the same
SUPPORT, packed and unpacked as plain Python lists.
"""
import msgpack
import pytest

from poe._core import codec


def msgpack_fields_propose(cms):
    batch = codec.Batch.from_messages(cms)
    msgs = [[batch.client(i), [list(op) for op in batch.ops(i)], bytes(batch.signature(i))]
            for i in range(len(batch))]
    return [codec.PROPOSE, 0, 3, 17, msgs, b"m" * 32]


@pytest.fixture(scope="module")
def propose_frame(client_messages):
    return codec.seal(codec.encode_propose(0, 3, 17, client_messages), b"m" * 32)


@pytest.fixture(scope="module")
def support_frame():
    return codec.seal(codec.encode_support(2, 3, 17, b"d" * 32, b"s" * 96), b"m" * 32)


SUPPORT_FIELDS = [codec.SUPPORT, 2, 3, 17, b"d" * 32, b"s" * 96, b"m" * 32]


@pytest.mark.benchmark(group="propose-decode")
def test_propose_decode_poe(benchmark, propose_frame):
    m = benchmark(codec.decode, propose_frame)
    assert len(m.batch) == 100


@pytest.mark.benchmark(group="propose-decode")
def test_propose_decode_msgpack(benchmark, client_messages):
    packed = msgpack.packb(msgpack_fields_propose(client_messages))
    fields = benchmark(msgpack.unpackb, packed)
    assert len(fields[4]) == 100


@pytest.mark.benchmark(group="propose-encode")
def test_propose_encode_poe(benchmark, client_messages):
    batch = codec.Batch.from_messages(client_messages)

    def encode():
        return codec.seal(codec.encode_propose(0, 3, 17, batch), b"m" * 32)

    assert codec.decode(benchmark(encode)).seq == 17


@pytest.mark.benchmark(group="propose-encode")
def test_propose_encode_msgpack(benchmark, client_messages):
    fields = msgpack_fields_propose(client_messages)
    assert benchmark(msgpack.packb, fields)


@pytest.mark.benchmark(group="support-decode")
def test_support_decode_poe(benchmark, support_frame):
    assert benchmark(codec.decode, support_frame).seq == 17


@pytest.mark.benchmark(group="support-decode")
def test_support_decode_msgpack(benchmark):
    packed = msgpack.packb(SUPPORT_FIELDS)
    assert benchmark(msgpack.unpackb, packed)[3] == 17


@pytest.mark.benchmark(group="support-encode")
def test_support_encode_poe(benchmark):
    def encode():
        return codec.seal(codec.encode_support(2, 3, 17, b"d" * 32, b"s" * 96), b"m" * 32)

    assert benchmark(encode)


@pytest.mark.benchmark(group="support-encode")
def test_support_encode_msgpack(benchmark):
    assert benchmark(msgpack.packb, SUPPORT_FIELDS)
