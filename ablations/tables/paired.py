"""Paired comparison of a table row with its reference row over shared training seeds.

Seed s of every variant starts from the same initialisation draw and data order as seed s of the reference, so
the comparison is per seed: d_s = variant - reference on the seeds finished (a finite number) on both sides.
From the n differences: their mean, a 95% interval (Student's t with n - 1 degrees of freedom:
mean ± t(0.975, n-1) · sd / sqrt(n)) and, as a distribution-free second check, the exact two-sided sign-flip
permutation p-value (all 2^n sign vectors; with n seeds it cannot go below 2 / 2^n: 0.25 for 3 seeds).

A seed whose value is NaN or infinite (a run that diverged) is listed, never used; a seed run on one side only
is listed as unpaired. The verdict of a row follows from the interval, not from the mean (``verdict``).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from dataclasses import dataclass

# t(0.975, df) for df = 1..30 (scipy.stats.t.ppf, 6 decimals); beyond 30 the Cornish-Fisher expansion around the
# normal quantile below, within 2e-6 of the exact value at df = 30 and closer above.
T_975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)  # fmt: skip
Z_975 = 1.959963984540054
EXACT_FLIPS = 16  # up to 2^16 sign vectors enumerated; more seeds than that: a seeded Monte Carlo of 2^16 flips


def t_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (the half-width factor of a 95% interval)."""
    if df < 1:
        raise ValueError(f"t quantile needs at least 1 degree of freedom, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def sign_flip_p(differences: list[float]) -> float:
    """Exact two-sided sign-flip p-value of the mean difference: the share of the 2^n sign vectors whose flipped
    mean is at least as far from 0 as the observed one (the observed vector counts, so p >= 2 / 2^n)."""
    n = len(differences)
    if n == 0:
        raise ValueError("no differences")
    observed = abs(sum(differences)) * (1 - 1e-12)  # ties (equal magnitudes) count as extreme
    if n <= EXACT_FLIPS:
        flips = itertools.product((1, -1), repeat=n)
        total = 2**n
    else:
        rng = random.Random(0)
        total = 2**EXACT_FLIPS
        flips = ([rng.choice((1, -1)) for _ in range(n)] for _ in range(total))
    extreme = sum(abs(sum(s * d for s, d in zip(signs, differences, strict=True))) >= observed for signs in flips)
    return extreme / total


@dataclass(frozen=True)
class Paired:
    """One row against its reference: the per-seed differences and what follows from them."""

    differences: dict[int, float]  # seed -> row minus reference, seeds finished on both sides
    diverged: tuple[int, ...]  # this row's seeds whose value is NaN/inf
    reference_diverged: tuple[int, ...]
    row_only: tuple[int, ...]  # run here only (no result of that seed on the reference side)
    reference_only: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.differences.values()) if self.differences else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% t interval of the mean difference; None below 2 pairs."""
        if self.n < 2:
            return None
        values = list(self.differences.values())
        half = t_975(self.n - 1) * statistics.stdev(values) / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    @property
    def p_sign_flip(self) -> float | None:
        return sign_flip_p(list(self.differences.values())) if self.differences else None

    def side(self) -> int:
        """+1 when the row's values are above the reference's (the interval above 0, or with one pair the single
        difference), -1 below, 0 when the interval contains 0 (or the one difference is 0, or there is none)."""
        bounds = self.interval
        if bounds is None:
            bounds = (self.mean, self.mean) if self.mean is not None else (0.0, 0.0)
        return 1 if bounds[0] > 0 else -1 if bounds[1] < 0 else 0


def _finite(values: dict[int, float | None]) -> dict[int, float]:
    return {s: float(v) for s, v in values.items() if v is not None and math.isfinite(v)}


def _bad(values: dict[int, float | None]) -> tuple[int, ...]:
    return tuple(sorted(s for s, v in values.items() if v is not None and not math.isfinite(v)))


def pair(values: dict[int, float | None], reference: dict[int, float | None]) -> Paired:
    """Pair a row's per-seed values with the reference's (seed -> value; NaN/inf: diverged; None: not scored)."""
    ours, ref = _finite(values), _finite(reference)
    shared = sorted(ours.keys() & ref.keys())
    return Paired(
        differences={s: ours[s] - ref[s] for s in shared},
        diverged=_bad(values),
        reference_diverged=_bad(reference),
        row_only=tuple(sorted(values.keys() - reference.keys())),
        reference_only=tuple(sorted(reference.keys() - values.keys())),
    )


def our_effect(paired: Paired, higher_is_better: bool) -> str:
    """Ours as a word: "better"/"worse" (the interval, or with one pair the one difference, away from 0), "within
    spread" (the interval contains 0), "same" (one pair, equal), "-" (no pair)."""
    if paired.n == 0:
        return "-"
    side = paired.side()
    if side == 0:
        return "within spread" if paired.n >= 2 else "same"
    return "better" if (side > 0) == higher_is_better else "worse"


def verdict(paired: Paired, paper_effect: str, higher_is_better: bool) -> str:
    """Reproduced / opposite / within spread, from the interval against the paper's direction ("better", "worse",
    "same" within its 1%, or "-" without a number). Where the paper claims no effect, the interval decides too:
    "reproduced (no effect)" when it contains 0, "<better|worse>, where the paper has none" when it excludes 0
    (a finding against the paper's claim, reported as such). With fewer than 2 pairs no interval, the bare
    direction."""
    ours = our_effect(paired, higher_is_better)
    if paired.n == 0:
        return "no paired seeds"
    if paired.n == 1:
        return f"one seed (no interval): {ours}"
    if paper_effect == "same":
        return "reproduced (no effect)" if ours == "within spread" else f"{ours}, where the paper has none"
    if ours == "within spread":
        return "within spread"
    if paper_effect not in ("better", "worse"):
        return f"ours {ours} (no paper number)"
    return "reproduced" if ours == paper_effect else "opposite"
