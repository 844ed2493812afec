"""OpenSLO v1 documents -> SLO files of ours, one per service.

Source: the OpenSLO specification, v1 (github.com/OpenSLO/OpenSLO, README.md at aa5cb78):
Service, SLO, SLI, AlertPolicy, AlertCondition and DataSource objects, SLIs inline or
by reference. What maps: rolling windows of whole days or weeks (7d to 365d), the
Occurrences budgeting method, one objective, Prometheus ratio metrics over counters
(good or bad with total) and Prometheus threshold metrics over a histogram (at or under
a value in seconds), alert policies whose conditions have severity page or ticket.
Everything else (time slices, calendar windows, raw ratios, gauges, other sources) is a
problem naming the file, line and field: we would alert on something else than the
document says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from llm_slo_stack.slo import burnrate, selector, spec
from llm_slo_stack.slo.spec import Path_, Problem, SpecError

API_VERSION = "openslo/v1"
KINDS = ("Service", "SLO", "SLI", "AlertPolicy", "AlertCondition", "DataSource",
         "AlertNotificationTarget")  # fmt: skip
PROMETHEUS = "prometheus"
SEVERITIES = (burnrate.PAGE, burnrate.TICKET)
QUERY_EXPECTED = (
    "a Prometheus series selector, bare or in sum(rate(…[window])) (the generated rules "
    "take their own rates and sums)"
)
# OpenSLO's duration shorthand for rolling windows; months, quarters and years have no
# fixed length, so they are calendar periods and do not map.
_WINDOW = re.compile(r"^([1-9][0-9]*)([dw])$")
_SUM = re.compile(r"^sum\s*\((.*)\)$", re.DOTALL)
_RATE = re.compile(r"^(?:rate|increase)\s*\((.*)\[[^\]\[]*\]\s*\)$", re.DOTALL)


class _Document:
    """One OpenSLO object and the lines of its fields, for problems."""

    def __init__(self, data: dict[str, Any], lines: dict[Path_, int], index: int) -> None:
        self.data, self.lines, self.index = data, lines, index
        self.kind = str(data.get("kind", ""))
        metadata = data.get("metadata")
        self.name = str(metadata.get("name", "")) if isinstance(metadata, dict) else ""

    def line(self, path: Path_) -> int | None:
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                return self.lines[path[:cut]]
        return None


class _Importer:
    """Reads the documents once, collecting every problem before giving up."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self.objects: dict[tuple[str, str], _Document] = {}

    def problem(self, doc: _Document, path: Path_, expected: str, found: Any) -> None:
        where = f"{doc.kind} {doc.name}: " if doc.name else f"document {doc.index + 1}: "
        self.problems.append(
            Problem(
                self.source, doc.line(path), where + spec.render_path(path), expected,
                "nothing" if found is None else spec.shown(found),
            )
        )  # fmt: skip

    def field(self, doc: _Document, path: Path_) -> Any:
        value: Any = doc.data
        for part in path:
            if isinstance(value, dict) and isinstance(part, str):
                value = value.get(part)
            elif isinstance(value, list) and isinstance(part, int) and part < len(value):
                value = value[part]
            else:
                return None
        return value

    def read(self, text: str) -> dict[str, dict[str, Any]]:
        """Our SLO file's data per service."""
        docs = []
        for index, (data, lines, problems) in enumerate(spec.documents(text, self.source)):
            self.problems += problems
            if data is None:
                continue
            doc = _Document(data if isinstance(data, dict) else {}, lines, index)
            if not isinstance(data, dict) or data.get("apiVersion") != API_VERSION:
                self.problem(
                    doc, ("apiVersion",), repr(API_VERSION), self.field(doc, ("apiVersion",))
                )
            elif doc.kind not in KINDS:
                self.problem(doc, ("kind",), f"one of {', '.join(KINDS)}", doc.kind)
            elif not doc.name:
                self.problem(doc, ("metadata", "name"), "a name", None)
            else:
                self.objects[(doc.kind, doc.name)] = doc
                docs.append(doc)
        services: dict[str, dict[str, Any]] = {}
        for doc in docs:
            if doc.kind == "SLO":
                self.slo(doc, services)
        if not services and not self.problems:
            self.problems.append(
                Problem(self.source, None, "(file)", "at least one OpenSLO SLO", "none")
            )
        return services

    def slo(self, doc: _Document, services: dict[str, dict[str, Any]]) -> None:
        service = self.field(doc, ("spec", "service"))
        if not isinstance(service, str) or not service:
            self.problem(doc, ("spec", "service"), "the name of a service", service)
            return
        period = self.period(doc)
        method = self.field(doc, ("spec", "budgetingMethod"))
        if method != "Occurrences":
            self.problem(
                doc, ("spec", "budgetingMethod"),
                "Occurrences (good events over all events; time slices are not burn rates)",
                method,
            )  # fmt: skip
        objective = self.objective(doc)
        sli = self.indicator(doc)
        alerting = self.alerting(doc)
        if period is None or objective is None or sli is None or alerting is None:
            return
        ours: dict[str, Any] = {"name": doc.name}
        description = self.field(doc, ("spec", "description"))
        if isinstance(description, str) and description:
            ours["description"] = description
        ours |= {"objective": objective, "sli": sli}
        if alerting:
            ours["alerting"] = alerting
        entry = services.setdefault(
            service,
            {"apiVersion": spec.API_VERSION, "service": service, "period": period, "slos": []},
        )
        if entry["period"] != period:
            self.problem(
                doc, ("spec", "timeWindow", 0, "duration"),
                f"the window of service {service}'s other SLOs ({entry['period']}): one SLO "
                "file has one period",
                self.field(doc, ("spec", "timeWindow", 0, "duration")),
            )  # fmt: skip
            return
        entry["slos"].append(ours)

    def period(self, doc: _Document) -> str | None:
        windows = self.field(doc, ("spec", "timeWindow"))
        if not isinstance(windows, list) or len(windows) != 1 or not isinstance(windows[0], dict):
            self.problem(doc, ("spec", "timeWindow"), "exactly one time window", windows)
            return None
        window = windows[0]
        if window.get("calendar") is not None or window.get("isRolling") is not True:
            self.problem(
                doc, ("spec", "timeWindow", 0, "isRolling"),
                "true (a rolling window; calendar windows reset the budget, burn rates do not)",
                window.get("isRolling"),
            )  # fmt: skip
            return None
        text = window.get("duration")
        match = _WINDOW.match(text) if isinstance(text, str) else None
        days = int(match.group(1)) * (7 if match.group(2) == "w" else 1) if match else 0
        if not spec.MIN_PERIOD_DAYS <= days <= spec.MAX_PERIOD_DAYS:
            self.problem(
                doc, ("spec", "timeWindow", 0, "duration"),
                f"whole days or weeks from {spec.MIN_PERIOD_DAYS}d to {spec.MAX_PERIOD_DAYS}d "
                "(such as 28d or 4w)",
                text,
            )  # fmt: skip
            return None
        return f"{days}d"

    def objective(self, doc: _Document) -> float | None:
        objectives = self.field(doc, ("spec", "objectives"))
        path: Path_ = ("spec", "objectives")
        if not isinstance(objectives, list) or len(objectives) != 1:
            self.problem(doc, path, "exactly one objective (no composite SLOs)", objectives)
            return None
        first = objectives[0] if isinstance(objectives[0], dict) else {}
        if "target" in first:
            target = first["target"]
            if spec.is_number(target) and 0 < target < 1:
                return float(Decimal(str(target)) * 100)
            self.problem(doc, (*path, 0, "target"), "a number between 0 and 1", target)
            return None
        percent = first.get("targetPercent")
        if spec.is_number(percent) and 0 < percent < 100:
            return float(percent)
        self.problem(doc, (*path, 0), "target (0 to 1) or targetPercent (0 to 100)", percent)
        return None

    def indicator(self, slo: _Document) -> dict[str, Any] | None:
        """The SLO's SLI as ours, from `indicator` or `indicatorRef`."""
        ref = self.field(slo, ("spec", "indicatorRef"))
        if ref is not None:
            doc = self.objects.get(("SLI", str(ref)))
            if doc is None:
                self.problem(slo, ("spec", "indicatorRef"), "the name of an SLI object", ref)
                return None
            return self.sli(doc, ("spec",), slo)
        if not isinstance(self.field(slo, ("spec", "indicator")), dict):
            self.problem(slo, ("spec", "indicator"), "an indicator or an indicatorRef", None)
            return None
        return self.sli(slo, ("spec", "indicator", "spec"), slo)

    def sli(self, doc: _Document, at: Path_, slo: _Document) -> dict[str, Any] | None:
        ratio, threshold = (
            self.field(doc, (*at, "ratioMetric")),
            self.field(doc, (*at, "thresholdMetric")),
        )
        if isinstance(ratio, dict):
            return self.ratio(doc, (*at, "ratioMetric"), ratio)
        if isinstance(threshold, dict):
            return self.threshold(doc, (*at, "thresholdMetric"), slo)
        self.problem(doc, at, "a ratioMetric or a thresholdMetric", None)
        return None

    def ratio(self, doc: _Document, at: Path_, ratio: Mapping[str, Any]) -> dict[str, Any] | None:
        if "raw" in ratio:
            self.problem(
                doc, (*at, "raw"),
                "good or bad with total (a precomputed ratio cannot be summed over windows)",
                "a raw ratio",
            )  # fmt: skip
            return None
        if ratio.get("counter") is not True:
            self.problem(
                doc, (*at, "counter"), "true (counters; the rules take their rates)",
                ratio.get("counter"),
            )  # fmt: skip
            return None
        if ("good" in ratio) == ("bad" in ratio) or "total" not in ratio:
            self.problem(doc, at, "good or bad (one of them) and total", None)
            return None
        numerator = "good" if "good" in ratio else "bad"
        queries = {key: self.query(doc, (*at, key)) for key in (numerator, "total")}
        if None in queries.values():
            return None
        ours = {"good" if numerator == "good" else "errors": queries[numerator]}
        return {"ratio": {**ours, "total": queries["total"]}}

    def threshold(self, doc: _Document, at: Path_, slo: _Document) -> dict[str, Any] | None:
        """A threshold metric over a Prometheus histogram: the SLO's op and value say
        which observations are good, and must be `at or under value` seconds."""
        query = self.query(doc, at)
        if query is None:
            return None
        objective: Any = self.field(slo, ("spec", "objectives", 0)) or {}
        path: Path_ = ("spec", "objectives", 0)
        if objective.get("op") not in ("lte", "lt"):
            self.problem(
                slo, (*path, "op"),
                "lte or lt (a histogram counts observations at or under a bound)",
                objective.get("op"),
            )  # fmt: skip
            return None
        value = objective.get("value")
        if not spec.is_number(value) or value <= 0:
            self.problem(
                slo, (*path, "value"), "a positive number of seconds (a bucket bound)", value
            )
            return None
        name = query.split("{", 1)[0]
        if name.endswith(("_count", "_sum")):
            self.problem(
                doc, (*at, "metricSource", "spec", "query"), "a histogram's buckets", query
            )
            return None
        histogram = query.replace("_bucket", "", 1) if name.endswith("_bucket") else query
        return {"latency": {"histogram": histogram, "threshold": value}}

    def query(self, doc: _Document, at: Path_) -> str | None:
        """The selector of a Prometheus metric source's query, without rate and sum."""
        source = self.field(doc, (*at, "metricSource"))
        if not isinstance(source, dict):
            self.problem(doc, (*at, "metricSource"), "a metric source", None)
            return None
        kind = source.get("type")
        ref = source.get("metricSourceRef")
        if kind is None and ref is not None:
            data_source = self.objects.get(("DataSource", str(ref)))
            kind = self.field(data_source, ("spec", "type")) if data_source else None
        if str(kind).lower() != PROMETHEUS:
            self.problem(doc, (*at, "metricSource", "type"), "Prometheus", kind)
            return None
        path = (*at, "metricSource", "spec", "query")
        text = self.field(doc, path)
        if not isinstance(text, str):
            self.problem(doc, path, QUERY_EXPECTED, text)
            return None
        inner = text.strip()
        for pattern in (_SUM, _RATE):
            match = pattern.match(inner)
            if match:
                inner = match.group(1).strip()
        try:
            return selector.parse(inner).render()
        except ValueError:
            self.problem(doc, path, QUERY_EXPECTED, text)
            return None

    def alerting(self, slo: _Document) -> dict[str, Any] | None:
        """Which of our alerts the SLO's policies ask for: a page where a condition has
        severity page, a ticket where one has ticket. Their windows and burn rates are the
        workbook's multiwindow tiers (rules/README.md), not the condition's single window."""
        policies = self.field(slo, ("spec", "alertPolicies"))
        if not policies:
            return {}
        severities: set[str] = set()
        for index, entry in enumerate(policies if isinstance(policies, list) else [policies]):
            policy = ("spec", "alertPolicies", index)
            doc, at = self.resolve(slo, policy, entry, "alertPolicyRef", "AlertPolicy")
            if doc is None:
                return None
            conditions = self.field(doc, (*at, "conditions"))
            for number, condition in enumerate(conditions if isinstance(conditions, list) else []):
                place = (*at, "conditions", number)
                where, inner = self.resolve(doc, place, condition, "conditionRef", "AlertCondition")
                if where is None:
                    return None
                severity = self.field(where, (*inner, "severity"))
                if severity not in SEVERITIES:
                    self.problem(where, (*inner, "severity"), "page or ticket", severity)
                    return None
                severities.add(str(severity))
        return {severity: severity in severities for severity in SEVERITIES}

    def resolve(
        self, doc: _Document, at: Path_, entry: Any, ref_key: str, kind: str
    ) -> tuple[_Document | None, Path_]:
        """An inline object's spec path, or the referenced object and its spec path."""
        if isinstance(entry, dict) and ref_key in entry:
            found = self.objects.get((kind, str(entry[ref_key])))
            if found is None:
                self.problem(doc, (*at, ref_key), f"the name of an {kind} object", entry[ref_key])
            return found, ("spec",)
        return doc, (*at, "spec")


def convert(text: str, source: str) -> dict[str, str]:
    """Our SLO file's text per service, each checked by our own loader, or a SpecError
    listing every problem."""
    importer = _Importer(source)
    services = importer.read(text)
    if importer.problems:
        raise SpecError(importer.problems)
    out = {}
    for service, data in services.items():
        body = spec.dump(data)
        header = f"# Imported from {source} (OpenSLO v1) by `llm-slo import openslo`.\n"
        spec.loads(body, f"{service}.yaml (from {source})")  # our own checks, or a SpecError
        out[service] = header + body
    return out
