"""A sampler that records what each span shows a sampler at its start."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult


class Recording(Sampler):
    """Samples everything and keeps what each span showed the sampler at its start."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, object]] = {}

    def should_sample(
        self,
        parent_context: object,
        trace_id: int,
        name: str,
        kind: object = None,
        attributes: Any = None,
        links: object = None,
        trace_state: object = None,
    ) -> SamplingResult:
        self.seen[name] = dict(attributes or {})
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "recording"
