"""Whether a running server's histograms carry an SLO file's latency thresholds.

A latency SLI counts the requests at or under its threshold, which a classic histogram
knows only at a bucket bound. Stock servers often lack the bound (vLLM's default TTFT
buckets jump from 1 s to 2.5 s), or the histogram (TGI has no TTFT), or give a mean
only (Triton's e2e). `llm-slo check --metrics` reads a live /metrics or a saved payload
through the sidecar's own mapping and says, per latency SLO, whether the server's
bounds carry the threshold and what to do when they do not.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from llm_slo_stack.exporters import backends, catalog
from llm_slo_stack.exporters.sidecar import SidecarCollector
from llm_slo_stack.exporters.upstream import ScrapeError, Upstream
from llm_slo_stack.slo import buckets
from llm_slo_stack.slo.model import LatencySLI, Spec

# vLLM added --custom-histogram-buckets in v0.30.1rc1 (its release notes); older
# releases write their default bounds only.
VLLM_CUSTOM_BUCKETS_SINCE = "0.30.1"


@dataclass(frozen=True)
class Finding:
    slo: str
    ok: bool
    message: str


@dataclass(frozen=True)
class Bounds:
    """The bucket bounds (seconds, +Inf left out) the server writes per catalog
    histogram, over every model, and the backend that wrote them."""

    backend: str
    by_metric: dict[str, set[float]]


def read_payload(where: str, timeout: float) -> str:
    """A /metrics body from a URL (fetched once) or a saved file; ScrapeError or OSError."""
    if where.startswith(("http://", "https://")):
        return Upstream(where, timeout).fetch()
    return Path(where).read_text(encoding="utf-8")


def server_bounds(text: str, backend: str = "auto") -> Bounds:
    """The bounds of a payload, mapped as the sidecar maps it; ScrapeError if it is not one."""
    chosen = backends.BACKENDS[backend] if backend != "auto" else backends.detect(text)
    if chosen is None:
        raise ScrapeError("bad_payload", "no vLLM, SGLang, TGI or Triton metric in the payload")
    collector = SidecarCollector("http://127.0.0.1:9/", chosen.name, max_models=1_000_000)
    by_metric: dict[str, set[float]] = {}
    for (name, _), histogram in collector.read(text).histograms.items():
        by_metric.setdefault(name, set()).update(b for b in histogram.buckets if b != math.inf)
    return Bounds(chosen.name, by_metric)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def findings(spec: Spec, bounds: Bounds) -> list[Finding]:
    """Per latency SLO of the spec: whether the server carries its threshold, and the fix."""
    out = []
    for slo in spec.slos:
        if not isinstance(slo.sli, LatencySLI) or not slo.sli.phase:
            continue  # the user's own histogram: its buckets are not vLLM's
        phase, threshold = slo.sli.phase, float(slo.sli.threshold)
        metric = catalog.PHASES[phase]
        where = f"{spec.source}: {slo.name}: {phase} under {_seconds(threshold)}"
        client = (
            f"measure {phase} where the client sees it (llm-trace-proxy writes "
            f"{metric.name} with the catalog's bounds, your thresholds among them) and point "
            "this SLO's selector at its job"
        )
        have = bounds.by_metric.get(metric.name)
        if have is None:
            out.append(
                Finding(
                    slo.name,
                    False,
                    f"{where}: {bounds.backend} writes no {phase} " f"histogram; {client}",
                )  # fmt: skip
            )
        elif not have:
            out.append(
                Finding(
                    slo.name,
                    False,
                    f"{where}: {bounds.backend} gives only a mean for "
                    f"{phase}, which cannot count requests under a threshold; {client}",
                )  # fmt: skip
            )
        elif any(math.isclose(threshold, b, rel_tol=1e-9) for b in have):
            out.append(Finding(slo.name, True, f"{where}: a bound of the server's histogram: ok"))
        else:
            out.append(
                Finding(
                    slo.name,
                    False,
                    f"{where}: {_missing(threshold, have, spec, bounds.backend)}, or {client}",
                )
            )
    return out


def _missing(threshold: float, have: set[float], spec: Spec, backend: str) -> str:
    below = max((b for b in have if b < threshold), default=None)
    above = min((b for b in have if b > threshold), default=None)
    nearest = " and ".join(_seconds(b) for b in (below, above) if b is not None)
    text = (
        f"not a bound of the server's histogram (nearest: {nearest}); fix: use a bound as "
        "the threshold"
    )
    if backend in ("vllm", "triton-vllm"):
        families = json.dumps(buckets.vllm_families(spec), separators=(",", ":"))
        text += (
            f", or start vLLM {VLLM_CUSTOM_BUCKETS_SINCE} or later with "
            f"--custom-histogram-buckets '{families}' (`llm-slo vllm-args`; older vLLM has "
            "no such flag)"
        )
    return text
