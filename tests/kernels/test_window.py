"""Window kernel: unit checks plus a Hypothesis state machine against a pure-Python model.

The model is a dict k -> slot with plain sets of voters; after every step the whole window is
compared with it, so an out-of-window call that mutated any slot, a vote counted twice, or a
slot not recycled by ``advance`` is caught.
"""
import gc
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from poe._core import window
from poe._core.window import Window, WindowError

D1, D2 = b"\x01" * 32, b"\x02" * 32


class Record:
    """A payload that can be weak-referenced (to prove recycling drops it)."""

    def __init__(self, k):
        self.k = k


# ---- construction ------------------------------------------------------------------------------

def test_window_error_is_a_value_error():
    assert issubclass(WindowError, ValueError)


@pytest.mark.parametrize("length,cap", [(1, 1), (2, 2), (3, 4), (128, 128), (129, 256)])
def test_capacity_is_next_power_of_two(length, cap):
    w = Window(length, 4)
    assert (w.length, w.capacity, w.low, w.high, w.n, w.kinds) == (length, cap, 0, length, 4, 3)


@pytest.mark.parametrize("args", [(0, 4), (window.LENGTH_MAX + 1, 4), (8, 0),
                                  (8, window.REPLICAS_MAX + 1), (8, 4, 0),
                                  (8, 4, window.KINDS_MAX + 1), (8, 4, 3, -1),
                                  (8, 4, 3, 2**64 - 8)])
def test_bad_construction_is_refused(args):
    with pytest.raises(ValueError):
        Window(*args)


def test_initial_low():
    w = Window(8, 4, 3, 1000)
    assert (w.low, w.high) == (1000, 1008)
    assert not w.contains(1000) and w.contains(1001) and w.contains(1008)
    assert not w.contains(1009)


# ---- votes and quorums -------------------------------------------------------------------------

def test_vote_is_idempotent_and_per_kind():
    w = Window(8, 7)
    assert w.vote(1, 0, 3) == 1
    assert w.vote(1, 0, 3) == 1
    assert w.vote(1, 0, 4) == 2
    assert w.vote(1, 1, 3) == 1
    assert (w.count(1, 0), w.count(1, 1), w.count(1, 2), w.count(2, 0)) == (2, 1, 0, 0)
    assert w.has_voted(1, 0, 4) and not w.has_voted(1, 2, 4) and not w.has_voted(2, 0, 4)


def test_quorum_reached_exactly_at_q():
    n, f = 7, 2
    nf = n - f
    w = Window(8, n)
    for r in range(nf):
        assert not w.has_quorum(5, 0, nf)
        w.vote(5, 0, r)
    assert w.has_quorum(5, 0, nf)
    assert not w.has_quorum(5, 0, nf + 1)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 63, 64, 65, 128, 130, 1024])
def test_voters_bitmap_is_lsb_first(n):
    w = Window(4, n)
    chosen = sorted({0, n - 1, n // 2, min(n - 1, 63), min(n - 1, 64)})
    for r in chosen:
        w.vote(2, 1, r)
    bitmap = w.voters(2, 1)
    assert len(bitmap) == (n + 7) // 8
    assert [r for r in range(n) if bitmap[r // 8] >> (r % 8) & 1] == chosen
    assert w.voters(2, 0) == bytes(len(bitmap))


def test_vote_if_match():
    w = Window(8, 4)
    assert w.vote_if_match(3, 0, 1, D1) == -1          # digest unset
    assert w.count(3, 0) == 0
    w.set_digest(3, D1)
    assert w.vote_if_match(3, 0, 1, D2) == -1          # different digest
    assert w.vote_if_match(3, 0, 1, D1) == 1
    assert w.vote_if_match(3, 0, 2, bytearray(D1)) == 2
    assert w.vote_if_match(3, 0, 2, D1) == 2           # repeated vote
    with pytest.raises(ValueError, match="32 bytes"):
        w.vote_if_match(3, 0, 3, D1[:31])
    assert w.count(3, 0) == 2


def test_digest_set_unset():
    w = Window(8, 4)
    assert w.digest(1) is None
    w.set_digest(1, D1)
    assert w.digest(1) == D1
    w.set_digest(1, memoryview(D2))
    assert w.digest(1) == D2
    w.set_digest(1, None)
    assert w.digest(1) is None
    for bad in (b"", D1 + b"x", D1[:31]):
        with pytest.raises(ValueError):
            w.set_digest(1, bad)
    with pytest.raises(TypeError):
        w.set_digest(1, 32)


def test_flags():
    w = Window(8, 4)
    assert w.flags(2) == 0
    assert w.set_flags(2, 0b101) == 0b101
    assert w.set_flags(2, 0b010) == 0b111
    assert w.clear_flags(2, 0b001) == 0b110
    assert w.set_flags(2, 0x80000000) == 0x80000006
    assert w.flags(3) == 0
    with pytest.raises(OverflowError):
        w.set_flags(2, 2**32)


def test_used_counts_slots_with_payload_or_votes():
    w = Window(8, 4)
    assert len(w) == 0
    w.set_payload(1, "p")
    w.vote(1, 0, 0)
    w.vote(2, 0, 0)
    w.set_digest(3, D1)          # a digest alone does not count
    w.set_flags(4, 1)            # neither do flags
    assert len(w) == w.used() == 2
    w.set_payload(1, None)
    assert len(w) == 2           # slot 1 still has a vote
    w.set_payload(5, "q")
    w.set_payload(5, None)
    assert len(w) == 2


# ---- argument checks ---------------------------------------------------------------------------

def test_replica_and_kind_are_checked():
    w = Window(8, 4, kinds=2)
    for kind, replica in [(-1, 0), (2, 0), (0, -1), (0, 4), (0, 10**6)]:
        with pytest.raises(ValueError):
            w.vote(1, kind, replica)
        with pytest.raises(ValueError):
            w.vote_if_match(1, kind, replica, D1)
        with pytest.raises(ValueError):
            w.has_voted(1, kind, replica)
    for kind in (-1, 2):
        for call in (w.count, w.voters):
            with pytest.raises(ValueError):
                call(1, kind)
        with pytest.raises(ValueError):
            w.has_quorum(1, kind, 1)
    for q in (0, -1, 5):
        with pytest.raises(ValueError, match="quorum"):
            w.has_quorum(1, 0, q)
    assert len(w) == 0 and w.count(1, 0) == 0


OUTSIDE = [-(2**70), -1, 0, 9, 10, 2**63, 2**64 - 1, 2**64, 2**80]


def calls(k):
    return [
        lambda w: w.vote(k, 0, 0), lambda w: w.vote_if_match(k, 0, 0, D1),
        lambda w: w.count(k, 0), lambda w: w.has_quorum(k, 0, 1), lambda w: w.voters(k, 0),
        lambda w: w.has_voted(k, 0, 0), lambda w: w.set_digest(k, D1),
        lambda w: w.digest(k), lambda w: w.flags(k), lambda w: w.set_flags(k, 1),
        lambda w: w.clear_flags(k, 1), lambda w: w.payload(k), lambda w: w.set_payload(k, 1),
    ]


@pytest.mark.parametrize("k", OUTSIDE)
def test_out_of_window_always_raises_and_never_mutates(k):
    w = Window(8, 4)                                  # window (0, 8], capacity 8
    w.set_digest(1, D1)
    w.vote(1, 0, 2)
    w.set_payload(1, "keep")
    for call in calls(k):
        with pytest.raises(WindowError, match="outside the window"):
            call(w)
    assert not w.contains(k) and k not in w
    # k = 9 aliases slot 1 (9 & 7 == 1): it must not have reached it
    assert (w.digest(1), w.count(1, 0), w.payload(1), w.flags(1), len(w)) == (D1, 1, "keep", 0, 1)
    for j in range(2, 9):
        assert (w.count(j, 0), w.digest(j), w.payload(j), w.flags(j)) == (0, None, None, 0)


def test_non_integer_sequence_numbers_are_type_errors():
    w = Window(8, 4)
    with pytest.raises(TypeError):
        w.vote(1.0, 0, 0)
    with pytest.raises(TypeError):
        w.digest("1")
    with pytest.raises(TypeError):
        w.contains(None)


# ---- advance and recycling ---------------------------------------------------------------------

def test_advance_recycles_everything_at_or_below_new_low():
    w = Window(8, 4)
    rec = Record(3)
    ref = weakref.ref(rec)
    for k in range(1, 9):
        w.vote(k, 0, k % 4)
        w.set_digest(k, D1)
        w.set_flags(k, k)
    w.set_payload(3, rec)
    del rec
    w.advance(4)
    gc.collect()
    assert ref() is None                              # payload dropped by the window
    assert (w.low, w.high, len(w)) == (4, 12, 4)
    for k in range(5, 9):                             # survivors keep their state
        assert (w.count(k, 0), w.digest(k), w.flags(k)) == (1, D1, k)
    for k in range(9, 13):                            # reuse slots of 1..4: clean
        assert (w.count(k, 0), w.digest(k), w.flags(k), w.payload(k)) == (0, None, 0, None)
        assert w.voters(k, 0) == b"\x00"
    with pytest.raises(WindowError):
        w.count(4, 0)


def test_advance_only_forward_and_noop_at_same_low():
    w = Window(8, 4, 3, 10)
    w.vote(11, 0, 0)
    with pytest.raises(WindowError, match="forward"):
        w.advance(9)
    with pytest.raises(WindowError):
        w.advance(-1)
    with pytest.raises(WindowError):
        w.advance(2**64 - 8 + 1)
    w.advance(10)
    assert (w.low, w.count(11, 0)) == (10, 1)


def test_advance_far_beyond_high_clears_the_window():
    w = Window(5, 4)
    for k in range(1, 6):
        w.vote(k, 2, 3)
        w.set_payload(k, k)
    w.advance(10**12)
    assert (w.low, w.high, len(w)) == (10**12, 10**12 + 5, 0)
    for k in range(10**12 + 1, 10**12 + 6):
        assert (w.count(k, 2), w.payload(k)) == (0, None)


def test_window_near_the_top_of_u64():
    top = 2**64 - 1
    w = Window(4, 4, 3, top - 4)
    assert w.high == top
    assert w.vote(top, 0, 1) == 1
    with pytest.raises(WindowError):
        w.vote(top + 1, 0, 1)
    w.advance(top - 4)


@given(st.lists(st.integers(0, 9), max_size=12))
def test_advance_in_steps_equals_one_jump(steps):
    a, b = Window(6, 3), Window(6, 3)
    for w in (a, b):
        for k in range(1, 7):
            w.vote(k, 0, k % 3)
            w.set_payload(k, k)
    low = 0
    for s in steps:
        low += s
        a.advance(low)
    b.advance(low)
    for k in range(low + 1, low + 7):
        survivor = k <= 6
        for w in (a, b):
            assert w.count(k, 0) == int(survivor)
            assert w.payload(k) == (k if survivor else None)
    assert len(a) == len(b) == max(0, 6 - low)


# ---- model-based state machine -----------------------------------------------------------------

class Slot:
    def __init__(self, kinds):
        self.flags = 0
        self.digest = None
        self.votes = [set() for _ in range(kinds)]
        self.payload = None


DIGESTS = [D1, D2, b"\x03" * 32]


class WindowMachine(RuleBasedStateMachine):
    @initialize(length=st.integers(1, 12), n=st.integers(1, 130), kinds=st.integers(1, 4),
                low=st.integers(0, 2**40))
    def setup(self, length, n, kinds, low):
        self.w = Window(length, n, kinds, low)
        self.length, self.n, self.kinds, self.low = length, n, kinds, low
        self.cap = self.w.capacity
        self.model = {}

    def slot(self, k):
        return self.model.setdefault(k, Slot(self.kinds))

    def inside(self, k):
        return self.low < k <= self.low + self.length

    def k_of(self, offset):
        # offsets reach below low, the aliasing slots above high, and far away
        return self.low + offset

    offsets = st.one_of(st.integers(1, 12), st.integers(-3, 40),
                        st.sampled_from([-(2**41), 2**64, 2**65]))
    replicas = st.one_of(st.integers(0, 3), st.integers(0, 129))   # repeats are likely

    def expect_outside(self, k, call):
        with pytest.raises(WindowError):
            call()

    @rule(offset=offsets, kind=st.integers(0, 3), replica=replicas)
    def vote(self, offset, kind, replica):
        k = self.k_of(offset)
        kind %= self.kinds
        replica %= self.n
        if not self.inside(k):
            return self.expect_outside(k, lambda: self.w.vote(k, kind, replica))
        s = self.slot(k)
        s.votes[kind].add(replica)
        assert self.w.vote(k, kind, replica) == len(s.votes[kind])

    @rule(offset=offsets, kind=st.integers(0, 3), replica=replicas,
          d=st.sampled_from(DIGESTS))
    def vote_if_match(self, offset, kind, replica, d):
        k = self.k_of(offset)
        kind %= self.kinds
        replica %= self.n
        if not self.inside(k):
            return self.expect_outside(k, lambda: self.w.vote_if_match(k, kind, replica, d))
        s = self.slot(k)
        got = self.w.vote_if_match(k, kind, replica, d)
        if s.digest != d:
            assert got == -1
        else:
            s.votes[kind].add(replica)
            assert got == len(s.votes[kind])

    @rule(offset=offsets, d=st.sampled_from(DIGESTS + [None]))
    def set_digest(self, offset, d):
        k = self.k_of(offset)
        if not self.inside(k):
            return self.expect_outside(k, lambda: self.w.set_digest(k, d))
        self.w.set_digest(k, d)
        self.slot(k).digest = d

    @rule(offset=offsets, bits=st.integers(0, 2**32 - 1), clear=st.booleans())
    def flags(self, offset, bits, clear):
        k = self.k_of(offset)
        op = self.w.clear_flags if clear else self.w.set_flags
        if not self.inside(k):
            return self.expect_outside(k, lambda: op(k, bits))
        s = self.slot(k)
        s.flags = s.flags & ~bits if clear else s.flags | bits
        assert op(k, bits) == s.flags

    @rule(offset=offsets, value=st.one_of(st.none(), st.integers(), st.text(max_size=3)))
    def set_payload(self, offset, value):
        k = self.k_of(offset)
        if not self.inside(k):
            return self.expect_outside(k, lambda: self.w.set_payload(k, value))
        self.w.set_payload(k, value)
        self.slot(k).payload = value

    @rule(offset=offsets, kind=st.integers(0, 3), q=st.integers(1, 130))
    def quorum(self, offset, kind, q):
        k = self.k_of(offset)
        kind %= self.kinds
        q = 1 + (q - 1) % self.n
        if not self.inside(k):
            return self.expect_outside(k, lambda: self.w.has_quorum(k, kind, q))
        assert self.w.has_quorum(k, kind, q) == (len(self.slot(k).votes[kind]) >= q)

    @rule(step=st.one_of(st.integers(0, 30), st.just(2**20)))
    def advance(self, step):
        new_low = self.low + step
        self.w.advance(new_low)
        for k in [k for k in self.model if k <= new_low]:
            del self.model[k]
        self.low = new_low

    @precondition(lambda self: self.low > 0)
    @rule(back=st.integers(1, 5))
    def advance_backwards(self, back):
        with pytest.raises(WindowError):
            self.w.advance(max(self.low - back, 0) if self.low >= back else -1)

    @invariant()
    def matches_model(self):
        w = self.w
        assert (w.low, w.high) == (self.low, self.low + self.length)
        used = 0
        nbytes = (self.n + 7) // 8
        for k in range(self.low + 1, self.low + self.length + 1):
            s = self.model.get(k) or Slot(self.kinds)
            assert w.digest(k) == s.digest
            assert w.flags(k) == s.flags
            assert w.payload(k) == s.payload
            for kind in range(self.kinds):
                assert w.count(k, kind) == len(s.votes[kind])
                bitmap = w.voters(k, kind)
                assert len(bitmap) == nbytes
                got = {r for r in range(self.n) if bitmap[r // 8] >> (r % 8) & 1}
                assert got == s.votes[kind]
            used += s.payload is not None or any(s.votes)
        assert len(w) == used


WindowMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                           deadline=None)
TestWindowMachine = WindowMachine.TestCase


def test_reset_forgets_one_slot_only():
    w = window.Window(8, 4)
    for k in (1, 2):
        w.set_digest(k, bytes([k]) * 32)
        w.vote(k, 0, 1)
        w.set_flags(k, 3)
        w.set_payload(k, ("slot", k))
    used = w.used()
    w.reset(2)
    assert (w.count(2, 0), w.flags(2), w.digest(2), w.payload(2)) == (0, 0, None, None)
    assert (w.count(1, 0), w.flags(1), w.digest(1), w.payload(1)) == (1, 3, b"\x01" * 32,
                                                                      ("slot", 1))
    assert w.used() == used - 1
    with pytest.raises(window.WindowError):
        w.reset(9)
