"""Histogram buckets for LLM latencies: Prometheus' quantile estimate, and a fit.

A classic histogram's quantile is only as good as its buckets: `histogram_quantile`
interpolates linearly inside the bucket the quantile falls in, and anything above the
last finite bound is +Inf, where it can only answer that bound. `estimate` reproduces
Prometheus' algorithm (promql/quantile.go, bucketQuantile) so the error of a bucket set
can be measured on data; `fit` chooses bounds that keep it small.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llm_slo_stack.exporters import catalog
from llm_slo_stack.slo.model import LatencySLI, Spec

QUANTILES = (0.5, 0.9, 0.95, 0.99)
HEADROOM = 4.0  # coverage reaches this many times p99: where an incident takes it
SLOWDOWN = 3.0  # an incident's workload: the same one this many times slower
CANDIDATE_STEPS = (-12, -8, -6, -4, -2, -1, 0, 1, 2, 4, 6, 8, 12)  # in standard errors
COVERAGE = 2  # bounds kept for coverage of the whole range (when the budget allows)
SIGNIFICANT = 3  # fitted bounds are rounded to this many significant digits


def positive_bounds(values: object) -> bool:
    """A non-empty list of positive finite numbers (bools are not numbers here)."""
    return (
        isinstance(values, list)
        and bool(values)
        and all(
            isinstance(b, int | float) and not isinstance(b, bool) and 0 < b < math.inf
            for b in values
        )
    )


def increasing(values: Sequence[float]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def valid_bounds(values: object) -> bool:
    """Histogram bounds as Prometheus and vLLM accept them: positive, finite, increasing."""
    return positive_bounds(values) and increasing(values)  # type: ignore[arg-type]


class SamplesError(ValueError):
    """A samples file that cannot be read as one latency in seconds per line."""


def read_samples(path: str | Path) -> list[float]:
    """Latencies in seconds, one per line (blank lines and `#` comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SamplesError(
            f"{path}: cannot read it: {getattr(error, 'strerror', None) or error}"
        ) from None
    samples = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            value = float(text)
        except ValueError:
            raise SamplesError(
                f"{path}:{number}: expected a latency in seconds, found {text[:40]!r}"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise SamplesError(f"{path}:{number}: expected a finite latency >= 0, found {text!r}")
        samples.append(value)
    if len(samples) < 2:
        raise SamplesError(f"{path}: expected at least 2 latencies, found {len(samples)}")
    return samples


def cumulative_counts(ordered: Sequence[float], bounds: Sequence[float]) -> list[int]:
    """Counts at or under each bound, then the total (+Inf), from sorted samples."""
    return [bisect.bisect_right(ordered, bound) for bound in bounds] + [len(ordered)]


def estimate(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """Prometheus' histogram_quantile from finite `bounds` and cumulative `counts`
    (one more count than bounds: the +Inf bucket).

    The rank q x total falls in the first bucket whose count reaches it; the answer
    interpolates linearly between that bucket's lower and upper bound (the lower bound
    of the first bucket is 0). A rank in the +Inf bucket answers the last finite bound.
    """
    total = counts[-1]
    if total == 0 or not bounds:
        return math.nan
    rank = q * total
    index = next((i for i, count in enumerate(counts[:-1]) if count >= rank), len(bounds))
    if index == len(bounds):
        return bounds[-1]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[index], counts[index]
    if index > 0:
        start = bounds[index - 1]
        count -= counts[index - 1]
        rank -= counts[index - 1]
    return start + (end - start) * (rank / count)


def exact(ordered: Sequence[float], q: float) -> float:
    """The sample quantile: the smallest sample with at least q of the samples at or under it."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def evaluate(
    samples: Iterable[float], bounds: Sequence[float], quantiles: Sequence[float] = QUANTILES
) -> dict[str, Any]:
    """Per quantile the exact value, Prometheus' estimate and the relative error; and the
    share of samples above the last finite bound (in +Inf)."""
    ordered = sorted(samples)
    counts = cumulative_counts(ordered, bounds)
    result: dict[str, Any] = {}
    for q in quantiles:
        truth, guess = exact(ordered, q), estimate(q, bounds, counts)
        error = abs(guess - truth) / truth if truth else (0.0 if guess == 0 else math.inf)
        result[label(q)] = {"exact": truth, "estimate": guess, "relative_error": error}
    result["inf_share"] = (len(ordered) - counts[-2]) / len(ordered) if bounds else 1.0
    return result


def label(q: float) -> str:
    """`p50`, `p99`, `p999`."""
    return "p" + f"{q * 100:g}".replace(".", "")


def worst_error(samples: Sequence[float], bounds: Sequence[float]) -> float:
    report = evaluate(samples, bounds)
    return max(float(report[label(q)]["relative_error"]) for q in QUANTILES)


def _worst_sorted(ordered: Sequence[float], bounds: Sequence[float]) -> float:
    """worst_error for samples already sorted (the fit's inner loop)."""
    counts = cumulative_counts(ordered, bounds)
    worst = 0.0
    for q in QUANTILES:
        truth = exact(ordered, q)
        guess = estimate(q, bounds, counts)
        worst = max(worst, abs(guess - truth) / truth if truth else 0.0)
    return worst


def fit(
    samples: Sequence[float], max_buckets: int, include: Iterable[float] = (), seed: int = 0
) -> list[float]:
    """At most `max_buckets` finite bounds that keep the quantile error small on this
    workload, always including `include` (the SLO thresholds).

    Bounds near a target quantile matter most: inside a narrow bucket around it the
    samples are nearly uniform, so linear interpolation is nearly exact. Candidates are
    the sample's quantiles at probabilities q + k x se (se = sqrt(q(1-q)/n), the
    quantile's standard error, k in CANDIDATE_STEPS), so a fresh sample's quantile still
    falls between two of them. Starting from a bracket of +-3 se around each target,
    the fit adds, one at a time, the candidate that most lowers the worst error on
    held-out data (fit on one half, score on the other, both ways), until it stops
    helping or the bounds for an incident are all that is left. Those are each
    quantile's tightest bracket at SLOWDOWN x (an incident's slower workload is the
    same shape scaled, so they estimate its quantiles as well as the fit does now),
    then COVERAGE bounds, log-spaced from half the median to HEADROOM times p99, so that
    any slowdown degrades gradually instead of landing in +Inf.
    """
    include = sorted({float(x) for x in include})
    if any(not math.isfinite(x) or x <= 0 for x in include):
        raise ValueError("include values must be positive finite seconds")
    needed = len(include) + 2 * len(QUANTILES)
    if max_buckets < needed:
        raise ValueError(
            f"max_buckets must be at least {needed} (2 per quantile + the included values)"
        )
    ordered = sorted(samples)
    if len(ordered) < 2:
        raise ValueError("need at least 2 samples")
    shuffled = list(ordered)
    random.Random(seed).shuffle(shuffled)
    halves = (sorted(shuffled[::2]), sorted(shuffled[1::2]))
    n = len(ordered)
    se = {q: max(math.sqrt(q * (1 - q) / n), 1 / n) for q in QUANTILES}
    probabilities = {q + k * se[q] for q in QUANTILES for k in (-3, 3)}
    pool = {q + k * se[q] for q in QUANTILES for k in CANDIDATE_STEPS} - probabilities
    # Room for each quantile's bracket at SLOWDOWN x, but never below two bounds of
    # precision now beyond the brackets.
    budget = max(needed + 2, max_buckets - COVERAGE - 2 * len(QUANTILES))

    def score(chosen: set[float]) -> float:
        return max(
            _worst_sorted(test, _at(train, chosen, include))
            for train, test in (halves, halves[::-1])
        )

    current = score(probabilities)
    while pool and len(include) + len(probabilities) < budget:
        best = min(sorted(pool), key=lambda p: score(probabilities | {p}))
        improved = score(probabilities | {best})
        if improved >= current * 0.99:
            break
        probabilities.add(best)
        pool.discard(best)
        current = improved
    bounds = _at(ordered, probabilities, include)
    return _cover(_incident(bounds, ordered, max_buckets - COVERAGE), ordered, max_buckets)


def _incident(bounds: list[float], ordered: Sequence[float], limit: int) -> list[float]:
    """`bounds` and, tail first while at most `limit` bounds, each target quantile's
    tightest bracket at SLOWDOWN x: a slower workload is the same shape scaled, so the
    scaled bracket estimates its quantile as well as this one does now."""
    chosen = set(bounds)
    for q in sorted(QUANTILES, reverse=True):
        index = bisect.bisect_left(bounds, exact(ordered, q))
        scaled = {_round(SLOWDOWN * b) for b in bounds[max(index - 1, 0) : index + 1]}
        if len(chosen | scaled) > limit:
            break
        chosen |= scaled
    return sorted(chosen)


def _at(
    ordered: Sequence[float], probabilities: Iterable[float], include: Sequence[float]
) -> list[float]:
    """Bounds at the sample's quantiles for `probabilities`, with `include`, rounded."""
    chosen = set(include)
    for p in probabilities:
        value = _round(exact(ordered, min(max(p, 1 / len(ordered)), 1.0)))
        if value > 0:
            chosen.add(value)
    return sorted(chosen)


def _cover(bounds: list[float], ordered: Sequence[float], max_buckets: int) -> list[float]:
    """Spend the bounds left on log-spaced coverage from half the median to HEADROOM x p99."""
    chosen = set(bounds)
    # Where the quantiles go when the workload slows down, not where outliers lie.
    low, high = max(exact(ordered, 0.5) / 2, 1e-4), exact(ordered, 0.99) * HEADROOM
    spare = max_buckets - len(chosen)
    if spare > 0 and high > low:
        ratio = (high / low) ** (1 / spare)
        for step in range(1, spare + 1):
            candidate = _round(low * ratio**step)
            if all(abs(candidate - c) > 0.02 * c for c in chosen):
                chosen.add(candidate)
    return sorted(chosen)


def _round(value: float) -> float:
    if value <= 0:
        return 0.0
    digits = SIGNIFICANT - 1 - math.floor(math.log10(value))
    return round(value, digits)


def vllm_families(spec: Spec) -> dict[str, list[float]]:
    """vLLM's --custom-histogram-buckets for a spec: per bucket family, the bounds of its
    phases (the spec's or the tuned defaults) and every latency threshold on them.

    vLLM shares one family between several phases (request_latency covers queue,
    prefill, decode and e2e), so a family gets the union of its phases' bounds.
    """
    families: dict[str, list[float]] = {}
    for family, phases in catalog.VLLM.FAMILY_PHASES.items():
        bounds = {b for phase in phases for b in spec.buckets_for(phase)}
        bounds |= {
            float(slo.sli.threshold)
            for slo in spec.slos
            if isinstance(slo.sli, LatencySLI) and slo.sli.phase in phases
        }
        families[family] = sorted(bounds)
    return families
