"""Shamir sharing over the BLS12-381 scalar field and the Δ trick (PROTOCOL.md §1.5).

blspy 2.x points offer only ``+`` and ``negate()``, no scalar multiplication. With key shares
``k_i = f(x_i)·Δ⁻¹ mod r`` (``x_i = i+1``, ``Δ = (n-1)!``) the Lagrange coefficients of any
signer set become exact small integers ``c_i = Δ·λ_i``, so ``Σ c_i·σ_i`` is computed with
additions only. This module holds the integer side: the dealer's polynomial, the
coefficients, and a tiny "multi-scalar multiplication program" (interleaved width-w NAF with
the coefficients' common factor pulled out) that is compiled once per signer set, cached by
the caller, and run on any group whose elements support ``+`` and ``negate()``.

Must never: touch blspy, log or return the polynomial, or do modular reduction of the
coefficients (they must stay exact integers for the addition chains).
"""
from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar

__all__ = [
    "MsmProgram",
    "R",
    "compile_msm",
    "deal",
    "delta",
    "inverse",
    "lagrange_delta",
    "run_msm",
    "share_points",
]

# order of the BLS12-381 groups G1/G2 (the scalar field)
R = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001

_COST_ADD = 1.0      # one point addition (G2: ~2.3 µs)
_COST_NEGATE = 0.2   # one negation (G2: ~0.5 µs)
_WINDOW_MAX = 6


def delta(n: int) -> int:
    """``Δ = (n-1)!``: clears every Lagrange denominator for points ``1..n``."""
    if type(n) is not int or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return math.factorial(n - 1)


def inverse(value: int) -> int:
    """Inverse of ``value`` modulo ``R``."""
    return pow(value, -1, R)


def share_points(n: int) -> list[int]:
    """Polynomial points of replicas ``0..n-1``: replica ``i`` uses ``x = i + 1``."""
    return list(range(1, n + 1))


def deal(n: int, threshold: int) -> tuple[int, list[int]]:
    """Dealer: random secret ``s`` and key shares ``k_i = f(i+1)·Δ⁻¹ mod R`` of a random
    polynomial of degree ``threshold - 1`` with ``f(0) = s`` (OS CSPRNG). Returns
    ``(s, [k_0 .. k_{n-1}])``; every value is non-zero."""
    if not 1 <= threshold <= n:
        raise ValueError(f"threshold {threshold} must be in 1..{n}")
    delta_inv = inverse(delta(n))
    while True:
        coefficients = [secrets.randbelow(R - 1) + 1] + [
            secrets.randbelow(R) for _ in range(threshold - 1)]
        shares = []
        for x in share_points(n):
            value = 0
            for coefficient in reversed(coefficients):
                value = (value * x + coefficient) % R
            shares.append(value * delta_inv % R)
        if all(shares):
            return coefficients[0], shares


def lagrange_delta(xs: Sequence[int], n: int, at: int = 0) -> list[int]:
    """Exact integers ``c_i = Δ·Π_{j≠i} (at - x_j)/(x_i - x_j)`` for the points ``xs``
    (distinct, in ``1..n``), so that ``Σ c_i·f(x_i)·Δ⁻¹ = f(at)`` for any polynomial ``f`` of
    degree ``< len(xs)``."""
    if len(set(xs)) != len(xs) or not all(type(x) is int and 1 <= x <= n for x in xs):
        raise ValueError(f"points must be distinct ints in 1..{n}")
    big_delta = delta(n)
    out = []
    for xi in xs:
        numerator, denominator = big_delta, 1
        for xj in xs:
            if xj != xi:
                numerator *= at - xj
                denominator *= xi - xj
        quotient, remainder = divmod(numerator, denominator)
        assert remainder == 0, "Δ must clear every Lagrange denominator"
        out.append(quotient)
    return out


# ---------------------------------------------------------------------------------------------
# multi-scalar multiplication with + and negate() only
# ---------------------------------------------------------------------------------------------

class _Point(Protocol):
    def __add__(self, other: Self) -> Self: ...
    def negate(self) -> Self: ...


P = TypeVar("P", bound=_Point)


@dataclass(frozen=True, slots=True)
class MsmProgram:
    """Straight-line program computing ``Σ scalars[i]·points[i]``.

    Registers ``0..inputs-1`` hold the input points. Each op ``(dst, a, b)`` sets
    ``reg[dst] = reg[a] + reg[b]``, or ``reg[dst] = -reg[a]`` when ``b < 0``.
    ``additions``/``negations`` count the ops (for benchmarks and docs).
    """

    inputs: int
    registers: int
    ops: tuple[tuple[int, int, int], ...]
    result: int
    additions: int
    negations: int


def _wnaf(value: int, width: int) -> list[int]:
    """Width-``width`` NAF digits of ``value > 0``, least significant first (width 1: binary)."""
    digits = []
    if width == 1:
        while value:
            digits.append(value & 1)
            value >>= 1
        return digits
    modulus, half = 1 << width, 1 << (width - 1)
    while value:
        digit = 0
        if value & 1:
            digit = value & (modulus - 1)
            if digit >= half:
                digit -= modulus
            value -= digit
        digits.append(digit)
        value >>= 1
    return digits


def _best_digits(scalar: int) -> tuple[int, list[int]]:
    """(width, signed digits) minimising precomputation + additions + negations."""
    magnitude, sign = abs(scalar), -1 if scalar < 0 else 1
    best: tuple[float, int, list[int]] | None = None
    for width in range(1, _WINDOW_MAX + 1):
        digits = [sign * d for d in _wnaf(magnitude, width)]
        precompute = (1 << (width - 2)) if width >= 3 else 0
        negatives = len({-d for d in digits if d < 0})
        cost = _COST_ADD * (precompute + sum(1 for d in digits if d)) + _COST_NEGATE * negatives
        if best is None or cost < best[0]:
            best = (cost, width, digits)
    assert best is not None
    return best[1], best[2]


class _Builder:
    def __init__(self, inputs: int) -> None:
        self.registers = inputs
        self.ops: list[tuple[int, int, int]] = []
        self.additions = 0
        self.negations = 0

    def new(self) -> int:
        self.registers += 1
        return self.registers - 1

    def add(self, a: int, b: int) -> int:
        dst = self.new()
        self.ops.append((dst, a, b))
        self.additions += 1
        return dst

    def add_into(self, dst: int, a: int, b: int) -> int:
        self.ops.append((dst, a, b))
        self.additions += 1
        return dst

    def negate(self, a: int) -> int:
        dst = self.new()
        self.ops.append((dst, a, -1))
        self.negations += 1
        return dst

    def straus(self, sources: Sequence[int], scalars: Sequence[int]) -> int:
        """Emit ``Σ scalars[i]·reg[sources[i]]`` (interleaved wNAF); returns its register."""
        plans = [_best_digits(s) for s in scalars]
        tables: list[dict[int, int]] = []
        for source, (width, digits) in zip(sources, plans):
            table = {1: source}
            if width >= 3:
                double = self.add(source, source)
                for odd in range(3, 1 << (width - 1), 2):
                    table[odd] = self.add(table[odd - 2], double)
            for digit in sorted({-d for d in digits if d < 0}):
                table[-digit] = self.negate(table[digit])
            tables.append(table)
        accumulator: int | None = None  # register holding the running sum (may alias)
        own = self.new()                # the accumulator's own register
        length = max(len(digits) for _, digits in plans)
        for position in range(length - 1, -1, -1):
            if accumulator is not None:
                accumulator = self.add_into(own, accumulator, accumulator)
            for table, (_, digits) in zip(tables, plans):
                if position < len(digits) and digits[position]:
                    term = table[digits[position]]
                    accumulator = term if accumulator is None else self.add_into(
                        own, accumulator, term)
        assert accumulator is not None
        return accumulator


def compile_msm(scalars: Sequence[int]) -> MsmProgram:
    """Compile ``Σ scalars[i]·P_i`` for non-zero integer scalars into a program.

    The common factor ``g = gcd(scalars)`` is pulled out: ``g·Σ (c_i/g)·P_i``. The Δ-trick
    coefficients share large factors of ``(n-1)!`` (~113 of ~130 bits at n = 32), so this
    cuts the additions about fourfold (each scalar would otherwise carry ``g``'s digits).
    """
    if not scalars or not all(type(s) is int and s for s in scalars):
        raise ValueError("scalars must be a non-empty sequence of non-zero ints")
    common = 0
    for s in scalars:
        common = math.gcd(common, s)
    builder = _Builder(len(scalars))
    result = builder.straus(range(len(scalars)), [s // common for s in scalars])
    if common > 1:
        result = builder.straus([result], [common])
    return MsmProgram(
        inputs=len(scalars), registers=builder.registers, ops=tuple(builder.ops),
        result=result, additions=builder.additions, negations=builder.negations)


def run_msm(program: MsmProgram, points: Sequence[P]) -> P:
    """Execute ``program`` on ``points`` (same order as the scalars it was compiled for)."""
    if len(points) != program.inputs:
        raise ValueError(f"program expects {program.inputs} points, got {len(points)}")
    registers: list = list(points)
    registers.extend([None] * (program.registers - program.inputs))
    for dst, a, b in program.ops:
        registers[dst] = registers[a] + registers[b] if b >= 0 else registers[a].negate()
    return registers[program.result]
