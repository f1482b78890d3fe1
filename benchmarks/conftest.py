"""Shared fixtures for the benchmark suites: a standard 100-request batch."""
import random

import pytest

from poe._core import codec

BATCH_REQUESTS = 100
VALUE_BYTES = 16


def make_client_messages(n=BATCH_REQUESTS, value_bytes=VALUE_BYTES, seed=7):
    """n single-request client messages, YCSB-A mix (half reads, half updates)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2:
            op = (i + 1, rng.randrange(10_000), codec.OP_READ, b"")
        else:
            op = (i + 1, rng.randrange(10_000), codec.OP_UPDATE, rng.randbytes(value_bytes))
        out.append(codec.pack_client_message(1000 + i, [op]) + rng.randbytes(64))
    return out


@pytest.fixture(scope="session")
def client_messages():
    return make_client_messages()
