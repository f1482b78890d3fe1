"""Window kernel micro-benchmark: nf votes on one slot then a quorum test, then the slot is freed.

Baseline: a pure-Python dict of per-kind sets doing the same (votes into a set, len() >= nf,
drop the slot). The baseline skips the window and id checks the kernel performs, so it is
flattered, not handicapped. Each result records n, f, nf and the window length.
"""
import pytest
from poe._core.window import Window

LENGTH = 128
KINDS = 3
SUPPORT = 0


def sizes(n):
    f = (n - 1) // 3
    return f, n - f


def record(benchmark, n, impl):
    f, nf = sizes(n)
    benchmark.extra_info.update(n=n, f=f, nf=nf, window_length=LENGTH, kinds=KINDS, impl=impl)


def window_round(n):
    _, nf = sizes(n)
    w = Window(LENGTH, n, KINDS)
    vote, has_quorum, advance = w.vote, w.has_quorum, w.advance
    replicas = range(nf)
    state = [0]

    def run():
        k = state[0] = state[0] + 1
        for r in replicas:
            vote(k, SUPPORT, r)
        ok = has_quorum(k, SUPPORT, nf)
        advance(k)                     # free the slot, as a stable checkpoint would
        return ok

    return run


def dict_round(n):
    _, nf = sizes(n)
    slots = {}
    replicas = range(nf)
    state = [0]

    def run():
        k = state[0] = state[0] + 1
        slot = slots.get(k)
        if slot is None:
            slot = slots[k] = [set() for _ in range(KINDS)]
        votes = slot[SUPPORT]
        for r in replicas:
            votes.add(r)
        ok = len(votes) >= nf
        del slots[k]
        return ok

    return run


@pytest.mark.parametrize("n", [4, 16, 64])
def test_window_vote_quorum_c_kernel(benchmark, n):
    record(benchmark, n, "poe._core.window.Window")
    benchmark.group = f"window-vote-quorum-n{n}"
    assert benchmark(window_round(n)) is True


@pytest.mark.parametrize("n", [4, 16, 64])
def test_window_vote_quorum_python_dict(benchmark, n):
    record(benchmark, n, "dict of sets")
    benchmark.group = f"window-vote-quorum-n{n}"
    assert benchmark(dict_round(n)) is True
