"""Digest kernel micro-benchmarks: C kernel vs a pure-Python hashlib loop, same inputs, same run.

Groups: batch-digest-100 (100 client messages of 250 B each), request-digest-250B, and
sha256-5400B (SHA-NI vs the portable block function, with OpenSSL's hashlib as a yardstick).
Each result records its configuration in extra_info.
"""
import hashlib
import random
import struct

import pytest

from poe._core import codec, digest

MESSAGES = 100
MESSAGE_BYTES = 250
VALUE_BYTES = MESSAGE_BYTES - 8 - 19 - 64      # client header + one op header + signature
SHA_BYTES = 5400
DEFAULT_BACKEND = digest.sha256_backend()


def make_messages(count=MESSAGES):
    rng = random.Random(1)
    out = [codec.pack_client_message(c, [(1, c, codec.OP_UPDATE, rng.randbytes(VALUE_BYTES))])
           + rng.randbytes(64) for c in range(count)]
    assert all(len(m) == MESSAGE_BYTES for m in out)
    return out


def py_request_digest(cm):
    return hashlib.sha256(b"PoE/REQ/v1" + cm).digest()


def py_batch_digest(messages):
    h = hashlib.sha256(b"PoE/BATCH/v1" + struct.pack("<I", len(messages)))
    for cm in messages:
        h.update(hashlib.sha256(b"PoE/REQ/v1" + cm).digest())
    return h.digest()


def record(benchmark, **extra):
    benchmark.extra_info.update({"sha256_backend": digest.sha256_backend(), **extra})


@pytest.fixture(scope="module")
def messages():
    return make_messages()


# ---- batch digest of 100 requests ---------------------------------------------------------------

@pytest.mark.benchmark(group="batch-digest-100")
def test_batch_digest_c_kernel(benchmark, messages):
    record(benchmark, messages=MESSAGES, message_bytes=MESSAGE_BYTES, input="codec.Batch")
    want = py_batch_digest(messages)

    def fresh_batch():                 # the digest is cached in the Batch: a new one per round
        return (codec.Batch.from_messages(messages),), {}

    got = benchmark.pedantic(digest.batch_digest, setup=fresh_batch, rounds=5000,
                             warmup_rounds=200)
    assert got == want


@pytest.mark.benchmark(group="batch-digest-100")
def test_batch_digest_of_list_c_kernel(benchmark, messages):
    record(benchmark, messages=MESSAGES, message_bytes=MESSAGE_BYTES, input="list of bytes")
    assert benchmark(digest.batch_digest_of, messages) == py_batch_digest(messages)


@pytest.mark.benchmark(group="batch-digest-100")
def test_batch_digest_python_hashlib(benchmark, messages):
    record(benchmark, messages=MESSAGES, message_bytes=MESSAGE_BYTES, input="list of bytes",
           sha256_backend="hashlib (OpenSSL)")
    assert benchmark(py_batch_digest, messages) == digest.batch_digest_of(messages)


# ---- request digest of one 250-byte message ----------------------------------------------------

@pytest.mark.benchmark(group="request-digest-250B")
def test_request_digest_c_kernel(benchmark, messages):
    record(benchmark, message_bytes=MESSAGE_BYTES)
    assert benchmark(digest.request_digest, messages[0]) == py_request_digest(messages[0])


@pytest.mark.benchmark(group="request-digest-250B")
def test_request_digest_python_hashlib(benchmark, messages):
    record(benchmark, message_bytes=MESSAGE_BYTES, sha256_backend="hashlib (OpenSSL)")
    assert benchmark(py_request_digest, messages[0]) == digest.request_digest(messages[0])


# ---- SHA-256 block functions on 5,400 bytes ----------------------------------------------------

@pytest.fixture(params=digest.sha256_backends())
def backend(request):
    digest._set_sha256_backend(request.param)
    yield request.param
    digest._set_sha256_backend(DEFAULT_BACKEND)


@pytest.mark.benchmark(group="sha256-5400B")
def test_sha256_backend(benchmark, backend):
    data = random.Random(2).randbytes(SHA_BYTES)
    record(benchmark, data_bytes=SHA_BYTES)
    assert benchmark(digest._sha256_parts, (data,)) == hashlib.sha256(data).digest()


@pytest.mark.benchmark(group="sha256-5400B")
def test_sha256_hashlib(benchmark):
    data = random.Random(2).randbytes(SHA_BYTES)
    record(benchmark, data_bytes=SHA_BYTES, sha256_backend="hashlib (OpenSSL)")
    want = digest._sha256_parts((data,))
    assert benchmark(lambda d: hashlib.sha256(d).digest(), data) == want
