"""The integer side of the Δ trick: exact Lagrange coefficients and the addition-chain
programs, checked in a toy group (integers mod r) where scalar products are easy to verify."""
from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poe.crypto.shamir import R, compile_msm, deal, delta, inverse, lagrange_delta, run_msm


class ToyPoint:
    """Integers mod R with the two operations blspy points offer: + and negate()."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value % R

    def __add__(self, other: ToyPoint) -> ToyPoint:
        return ToyPoint(self.value + other.value)

    def negate(self) -> ToyPoint:
        return ToyPoint(-self.value)


SCALAR = st.integers(1, 2**300).flatmap(lambda m: st.sampled_from([m, -m]))


@settings(max_examples=300, deadline=None)
@given(scalars=st.lists(SCALAR, min_size=1, max_size=8),
       factor=st.integers(1, 2**120), seed=st.integers(0, 2**32))
def test_program_computes_the_multi_scalar_product(scalars, factor, seed) -> None:
    scalars = [s * factor for s in scalars]  # exercise the common-factor path
    rng = random.Random(seed)
    points = [rng.randrange(R) for _ in scalars]
    program = compile_msm(scalars)
    result = run_msm(program, [ToyPoint(p) for p in points])
    assert result.value == sum(s * p for s, p in zip(scalars, points)) % R


def test_program_for_plus_minus_one_needs_no_additions() -> None:
    assert compile_msm([1]).additions == 0
    program = compile_msm([-1])
    assert (program.additions, program.negations) == (0, 1)
    assert run_msm(program, [ToyPoint(5)]).value == R - 5


@pytest.mark.parametrize("scalars", [[], [0], [1, 0], [1.5], ["2"]])
def test_compile_rejects_bad_scalars(scalars) -> None:
    with pytest.raises(ValueError):
        compile_msm(scalars)


def test_run_rejects_wrong_point_count() -> None:
    with pytest.raises(ValueError, match="expects 2 points"):
        run_msm(compile_msm([3, 5]), [ToyPoint(1)])


@pytest.mark.parametrize("n", [1, 2, 4, 7, 10])
def test_delta_coefficients_are_exact_for_every_subset(n: int) -> None:
    t = n - (n - 1) // 3
    for subset in itertools.combinations(range(1, n + 1), t):
        for at in [0] + [x for x in range(1, n + 1) if x not in subset]:
            lagrange_delta(list(subset), n, at)  # asserts exact division inside


@pytest.mark.parametrize("n", [4, 16, 32])
def test_dealt_shares_reconstruct_the_secret(n: int) -> None:
    t = n - (n - 1) // 3
    secret, shares = deal(n, t)
    assert len(shares) == n and all(0 < k < R for k in shares)
    rng = random.Random(n)
    for _ in range(3):
        subset = sorted(rng.sample(range(n), t))
        coefficients = lagrange_delta([i + 1 for i in subset], n)
        assert sum(c * shares[i] for c, i in zip(coefficients, subset)) % R == secret
    # t-1 shares interpolate to something else (with overwhelming probability)
    subset = list(range(t - 1))
    if subset:
        coefficients = lagrange_delta([i + 1 for i in subset], n)
        assert sum(c * shares[i] for c, i in zip(coefficients, subset)) % R != secret


def test_delta_and_inverse() -> None:
    assert delta(1) == 1 and delta(4) == 6 and delta(5) == 24
    assert delta(32) * inverse(delta(32)) % R == 1
    with pytest.raises(ValueError):
        delta(0)
    with pytest.raises(ValueError):
        deal(4, 5)


def test_common_factor_cuts_the_cost_at_n32() -> None:
    """The reason for pulling out gcd(c_i): the n = 32 program stays small."""
    coefficients = lagrange_delta(list(range(1, 23)), 32)
    program = compile_msm(coefficients)
    naive_additions = sum(abs(c).bit_length() for c in coefficients) // 3
    assert program.additions < naive_additions / 2
