"""Load an SLO file into the frozen model, reporting every problem at once.

Each problem names the file, the line, the path to the field
(`slos[1].sli.latency.threshold`), what was expected and what was found. Loading never
raises anything but SpecError.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeGuard

import yaml

from llm_slo_stack.exporters import catalog
from llm_slo_stack.slo import buckets as slo_buckets
from llm_slo_stack.slo import burnrate, conventions, duration, model, selector
from llm_slo_stack.slo.model import (
    SLI,
    SLO,
    Alerting,
    AvailabilitySLI,
    GoodputSLI,
    LatencySLI,
    RatioSLI,
    Spec,
)

API_VERSION = "llm-slo-stack/v1"
DEFAULT_PERIOD = "30d"
URL_SCHEMES = ("http://", "https://")
DEFAULT_PATH = Path(__file__).with_name("default.yaml")  # shipped in the wheel
DEFAULT_SOURCE = "llm_slo_stack/slo/default.yaml"  # how generated files name it
MIN_PERIOD_DAYS = 7
MAX_PERIOD_DAYS = 365
NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NAME_EXPECTED = "lowercase letters, digits and '-' (at most 63, not starting or ending in '-')"

# Labels the generated rules set themselves; a spec may not set or group by them.
RESERVED_LABELS = frozenset(
    {
        catalog.SLO, catalog.SERVICE, catalog.SEVERITY, catalog.QUANTILE, catalog.LE,
        catalog.ALERTNAME, catalog.ALERTSTATE, catalog.MODEL, catalog.OUTCOME,
    }
)  # fmt: skip
# Labels the SLIs themselves match on; a selector that pinned them would break the SLI.
SELECTOR_RESERVED = frozenset({catalog.LE, catalog.OUTCOME, "__name__"})
GROUP_BY_RESERVED = RESERVED_LABELS - {catalog.MODEL}

_MISSING = object()
Path_ = tuple[str | int, ...]
Buckets = dict[str, tuple[float, ...]]  # phase -> bounds, from the spec's buckets:


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an SLO file."""

    source: str
    line: int | None
    path: str
    expected: str
    found: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        text = f"{where}: {self.path}: expected {self.expected}, found {self.found}"
        return f"{text}; {self.hint}" if self.hint else text


class SpecError(Exception):
    """An SLO file that cannot be used; `problems` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def load(path: str | Path, source: str | None = None) -> Spec:
    """Read, parse and validate an SLO file; `source` names it (default: the path)."""
    source = source or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise SpecError(
            [Problem(source, None, "(file)", "a readable UTF-8 file", reason)]
        ) from None
    return loads(text, source)


def loads(text: str, source: str = "<string>") -> Spec:
    """Parse and validate SLO YAML text; `source` names it in problems."""
    data, lines, problems = _parse_yaml(text, source)
    if problems:
        raise SpecError(problems)
    checker = _Checker(source, lines)
    spec = checker.spec(data)
    if checker.problems:
        raise SpecError(checker.problems)
    assert spec is not None
    return spec


def dump(data: Any) -> str:
    """An SLO file's data as YAML, in the order given."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1_000_000)


def render_path(path: Path_) -> str:
    """`('slos', 1, 'sli')` as `slos[1].sli`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


# Bounds on what a YAML file may make the loader build: an SLO file is a few kB, while a
# 499-byte alias bomb expands to gigabytes and a recursive alias never ends.
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 20_000  # mappings, lists and scalars, each alias counted as often as used


class _TooBig(Exception):
    """A YAML document past one of the bounds."""

    def __init__(self, line: int, expected: str, found: str) -> None:
        super().__init__(expected)
        self.line, self.expected, self.found = line, expected, found


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[Path_, int], list[Problem]]:
    """The file's one document, the line of each of its fields, and its problems."""
    try:
        found = documents(text, source)
    except SpecError as error:
        return None, {}, error.problems
    if len(found) > 1:
        line = min(found[1][1].values(), default=None)
        return None, {}, [Problem(source, line, "(file)", "one YAML document", "several")]
    return found[0] if found else (None, {}, [])


def documents(text: str, source: str) -> list[tuple[Any, dict[Path_, int], list[Problem]]]:
    """Every YAML document of `text` within the bounds: its data, the line of each of its
    fields, and its duplicate keys. A file past a bound, or not YAML, is a SpecError."""
    if len(text) > MAX_BYTES:
        raise SpecError(
            [Problem(source, None, "(file)", f"at most {MAX_BYTES} characters", f"{len(text)}")]
        )
    loader = yaml.SafeLoader(text)
    found = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            lines: dict[Path_, int] = {(): node.start_mark.line + 1}
            problems: list[Problem] = []
            _Walk(lines, problems, source).node(node, ())
            found.append((loader.construct_document(node), lines, problems))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else None
        what = (getattr(error, "problem", None) or str(error)).removeprefix("found ")
        raise SpecError([Problem(source, line, "(file)", "valid YAML", what)]) from None
    except RecursionError:
        nesting = f"at most {MAX_DEPTH} levels of nesting"
        raise SpecError([Problem(source, None, "(file)", nesting, "deeper nesting")]) from None
    except _TooBig as error:
        raise SpecError(
            [Problem(source, error.line, "(file)", error.expected, error.found)]
        ) from None
    finally:
        loader.dispose()
    return found


class _Walk:
    """Records the line of every field and reports duplicate keys, which YAML hides,
    within the bounds: depth, values once aliases are expanded, and no alias inside
    itself."""

    def __init__(self, lines: dict[Path_, int], problems: list[Problem], source: str) -> None:
        self.lines, self.problems, self.source = lines, problems, source
        self.values = 0
        self.open: set[int] = set()  # the nodes being walked: one met again is a cycle

    def node(self, node: yaml.Node, path: Path_) -> None:
        line = node.start_mark.line + 1
        self.values += 1
        if self.values > MAX_VALUES:
            raise _TooBig(line, f"at most {MAX_VALUES} values once aliases are expanded", "more")
        if len(path) > MAX_DEPTH:
            raise _TooBig(line, f"at most {MAX_DEPTH} levels of nesting", "deeper nesting")
        if id(node) in self.open:
            raise _TooBig(line, "no alias inside the value it names", "a recursive alias")
        self.open.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    line = key_node.start_mark.line + 1
                    raise _TooBig(line, "keys that are plain text", f"a {key_node.id} as a key")
                key = key_node.value
                child = (*path, key)
                key_line = key_node.start_mark.line + 1
                if key in seen:
                    self.problems.append(
                        Problem(
                            self.source,
                            key_line,
                            render_path(child),
                            "each key once",
                            "a duplicate key",
                        )
                    )
                seen.add(key)
                self.lines.setdefault(child, key_line)
                self.node(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                self.lines.setdefault(child, item.start_mark.line + 1)
                self.node(item, child)
        self.open.discard(id(node))


def shown(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value) if value else "an empty string"
    return str(value)


def is_number(value: Any) -> TypeGuard[int | float]:
    """A JSON or YAML number (a bool is not one here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(bound: float) -> str:
    return f"{bound:g}"


class _Checker:
    """Walks the parsed YAML once, building the model and collecting problems."""

    def __init__(self, source: str, lines: dict[Path_, int]) -> None:
        self.source = source
        self.lines = lines
        self.problems: list[Problem] = []
        self.group_by_labels: tuple[str, ...] = ()  # the spec's, once read

    def problem(self, path: Path_, expected: str, found: Any, hint: str = "") -> None:
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line:
                break
        text = found if isinstance(found, _Found) else shown(found)
        self.problems.append(
            Problem(self.source, line, render_path(path), expected, str(text), hint)
        )

    def mapping(
        self, path: Path_, value: Any, known: tuple[str, ...] | None
    ) -> dict[str, Any] | None:
        """`value` as a dict, reporting a wrong type and (given `known`) unknown keys."""
        if not isinstance(value, dict):
            self.problem(path, "a mapping", value)
            return None
        for key in value:
            if known is not None and key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else ""
                self.problem(
                    (*path, key),
                    f"one of the fields {', '.join(known)}",
                    _Found(f"unknown field {key!r}"),
                    hint,
                )
        return value

    def text(
        self, path: Path_, value: Any, pattern: re.Pattern[str] | None, expected: str
    ) -> str | None:
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            self.problem(path, expected, value)  # fullmatch: `$` would let a final newline in
            return None
        return value

    def labels(self, path: Path_, value: Any, reserved: frozenset[str]) -> dict[str, str]:
        """A label-name to string mapping; reserved names are refused."""
        if value is _MISSING or value is None:
            return {}
        mapping = self.mapping(path, value, None)
        result: dict[str, str] = {}
        for key, item in (mapping or {}).items():
            name = str(key)
            if not selector.LABEL_NAME.fullmatch(name) or name.startswith("__"):
                self.problem((*path, key), "a label name ([a-zA-Z_][a-zA-Z0-9_]*)", name)
            elif name in reserved:
                self.problem(
                    (*path, key),
                    "a label name the generated rules do not set themselves",
                    _Found(f"the reserved label {name!r}"),
                )
            elif not isinstance(item, str):
                self.problem((*path, key), "a string (quote it)", item)
            elif not _balanced_template(item):
                self.problem(
                    (*path, key),
                    "text whose {{ }} template actions are balanced and not empty (Prometheus "
                    "renders labels and annotations as Go templates)",
                    item,
                )
            else:
                result[name] = item
        return result

    def spec(self, data: Any) -> Spec | None:
        if data is None:
            self.problem((), "a mapping with apiVersion, service and slos", _Found("an empty file"))
            return None
        top = self.mapping((), data, _TOP_FIELDS)
        if top is None:
            return None
        version = top.get("apiVersion", _MISSING)
        if version != API_VERSION:
            self.problem(("apiVersion",), repr(API_VERSION), version)
        service = self.text(("service",), top.get("service", _MISSING), NAME, NAME_EXPECTED)
        period = self.period(top.get("period", DEFAULT_PERIOD))
        group_by = self.group_by(top.get("group_by", _MISSING))
        self.group_by_labels = tuple(group_by)
        labels = self.labels(("labels",), top.get("labels", _MISSING), RESERVED_LABELS)
        for name in set(labels) & set(group_by):
            self.problem(
                ("labels", name), "a label not also in group_by", _Found(f"the label {name!r}")
            )
        selector_labels = self.labels(
            ("selector",), top.get("selector", _MISSING), SELECTOR_RESERVED
        )
        buckets = self.buckets(top.get("buckets", _MISSING))
        runbook_base = top.get("runbook_base_url", "")
        if not isinstance(runbook_base, str):
            self.problem(("runbook_base_url",), "a URL prefix (a string)", runbook_base)
            runbook_base = ""
        dashboard_base = top.get("dashboard_base_url", model.DEFAULT_DASHBOARD_BASE)
        if not isinstance(dashboard_base, str) or not dashboard_base.startswith(URL_SCHEMES):
            self.problem(
                ("dashboard_base_url",),
                "Grafana's URL, such as https://grafana.example.com",
                dashboard_base,
            )
            dashboard_base = ""
        include = self.include(top.get("include", _MISSING))
        deploy = self.deploy(top.get("deploy", _MISSING))
        slos = self.slos(top.get("slos", _MISSING), period, buckets)
        if deploy is not None and deploy.pools:
            self.pooled(slos, selector_labels)
        if catalog.TENANT in group_by:
            self.tenant_groups(slos)
        if self.problems:
            return None
        return Spec(
            service=service or "",
            period=period or 0,
            slos=tuple(slos),
            labels=MappingProxyType(dict(sorted(labels.items()))),
            selector=MappingProxyType(dict(sorted(selector_labels.items()))),
            group_by=tuple(group_by),
            buckets=MappingProxyType(buckets),
            runbook_base_url=runbook_base,
            dashboard_base_url=dashboard_base,
            source=self.source,
            include=frozenset(include),
            deploy=deploy,
        )

    def period(self, value: Any) -> int | None:
        seconds = duration.parse(value) if isinstance(value, str) else None
        expected = (
            f"a whole number of days from {MIN_PERIOD_DAYS}d to {MAX_PERIOD_DAYS}d, such as 28d "
            "or 30d (the longest alert window is 3d)"
        )
        if (
            seconds is None
            or seconds % burnrate.DAY
            or not MIN_PERIOD_DAYS * burnrate.DAY <= seconds <= MAX_PERIOD_DAYS * burnrate.DAY
        ):
            self.problem(("period",), expected, value)
            return None
        return int(seconds)

    def group_by(self, value: Any) -> list[str]:
        if value is _MISSING or value is None:
            return []
        if not isinstance(value, list):
            self.problem(("group_by",), "a list of label names, such as [model]", value)
            return []
        names: list[str] = []
        for index, item in enumerate(value):
            path = ("group_by", index)
            if not isinstance(item, str) or not selector.LABEL_NAME.fullmatch(item):
                self.problem(path, "a label name ([a-zA-Z_][a-zA-Z0-9_]*)", item)
            elif item in GROUP_BY_RESERVED:
                self.problem(
                    path, "a label of the served series", _Found(f"the reserved label {item!r}")
                )
            elif item in names:
                self.problem(path, "each label once", _Found(f"{item!r} again"))
            else:
                names.append(item)
        return names

    def deploy(self, value: Any) -> model.Deploy | None:
        """The `deploy:` section: where the service runs, for `llm-slo k8s`."""
        if value is _MISSING or value is None:
            return None
        fields = self.mapping(("deploy",), value, _DEPLOY_FIELDS)
        if fields is None:
            return None
        found = len(self.problems)
        where = ("deploy", "namespace")
        expected = "a Kubernetes namespace (lowercase letters, digits, '-')"
        namespace = self.text(where, fields.get("namespace"), DNS_LABEL, expected)
        engine = fields.get("engine")
        if engine not in model.ENGINES:
            self.problem(("deploy", "engine"), f"one of {', '.join(model.ENGINES)}", engine)
        served = self.text(("deploy", "model"), fields.get("model"), NON_EMPTY, "a model name")
        image = fields.get("image", "")
        if image and not (isinstance(image, str) and PINNED_IMAGE.fullmatch(image)):
            self.problem(
                ("deploy", "image"), "an image pinned by tag, such as repo/name:v1.2", image
            )
        gpus = self.count(("deploy", "gpus"), fields.get("gpus", 1), 0)
        replicas = self.count(("deploy", "replicas"), fields.get("replicas", 1), 1)
        pools, router = self.pools(fields.get("pools", _MISSING), engine, gpus)
        if len(self.problems) > found:
            return None
        return model.Deploy(str(namespace), str(engine), str(served), str(image),
                            gpus, replicas, pools, router)  # fmt: skip

    def count(self, path: Path_, number: Any, low: int) -> int:
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= 64:
            self.problem(path, f"a whole number from {low} to 64", number)
            return low
        return number

    def pools(self, value: Any, engine: Any, gpus: int) -> tuple[tuple[model.Pool, ...], str]:
        """`deploy.pools`: prefill and decode apart, each with its replicas (and GPUs, the
        deploy's by default), behind the P/D router at `router`."""
        if value is _MISSING or value is None:
            return (), ""
        fields = self.mapping(("deploy", "pools"), value, ("router", *model.POOLS))
        if fields is None:
            return (), ""
        if engine in model.ENGINES and engine not in model.POOL_ENGINES:
            expected = (
                f"an engine that runs prefill and decode apart ({', '.join(model.POOL_ENGINES)})"
            )
            self.problem(("deploy", "engine"), expected, engine)
        router = fields.get("router")
        if not isinstance(router, str) or not router.startswith(URL_SCHEMES):
            expected = "the P/D router's URL, such as http://pd-router:8000"
            self.problem(("deploy", "pools", "router"), expected, router)
        found = []
        for name in model.POOLS:
            path: Path_ = ("deploy", "pools", name)
            pool = self.mapping(path, fields.get(name), ("replicas", "gpus"))
            if pool is not None:
                replicas = self.count((*path, "replicas"), pool.get("replicas", 1), 1)
                found.append(
                    model.Pool(
                        name, replicas, self.count((*path, "gpus"), pool.get("gpus", gpus), 0)
                    )
                )
        return tuple(found), str(router)

    def pooled(self, slos: list[SLO], selector_labels: dict[str, str]) -> None:
        """With prefill and decode apart, every SLI must read a view that sees each
        request whole, once (see model.POOL_SERVER_PHASES), and the rules one pool."""
        if conventions.JOB not in selector_labels:
            self.problem(
                ("selector",),
                "a job with deploy.pools (the rules read the decode pool's job; the "
                "prefill pool's series are scraped under a job of their own)",
                _Found("no job"),
            )
        for index, slo in enumerate(slos):
            sli = slo.sli
            if isinstance(sli, LatencySLI) and sli.histogram is None:
                phase = sli.phase
            elif isinstance(sli, AvailabilitySLI):
                phase = "availability"
            else:
                continue
            if sli.source == model.SERVER and phase not in model.POOL_SERVER_PHASES:
                self.problem(
                    ("slos", index, "sli"),
                    "source: client with deploy.pools (the prefill and the decode pool "
                    f"each see part of every request; a server's view is whole only for "
                    f"{', '.join(model.POOL_SERVER_PHASES)})",
                    _Found(f"{phase} from the server"),
                )

    def include(self, value: Any) -> list[str]:
        """The optional rule sets: none unless asked for, so that a plain HTTP SLO file
        yields only its SLOs."""
        if value is _MISSING or value is None:
            return []
        expected = f"a list of {' and '.join(model.INCLUDES)}"
        if not isinstance(value, list):
            self.problem(("include",), expected, value)
            return []
        for index, item in enumerate(value):
            if item not in model.INCLUDES:
                self.problem(("include", index), f"one of {', '.join(model.INCLUDES)}", item)
        return [item for item in value if item in model.INCLUDES]

    def tenant_groups(self, slos: list[SLO]) -> None:
        """Per-tenant SLOs read the only series of ours that carry the tenant, capped by
        the tracing middleware: the client-side request and goodput counters (a ratio
        SLI's counters are the user's to label)."""
        for slo in slos:
            sli = slo.sli
            if isinstance(sli, GoodputSLI | RatioSLI) or (
                isinstance(sli, AvailabilitySLI) and sli.source == model.CLIENT
            ):
                continue
            self.problem(
                ("group_by",),
                "tenant only with goodput, client-side availability or ratio SLIs (of our "
                "series only the tracing proxy's request counters carry a tenant, capped at "
                "--max-tenants)",
                _Found(f"SLO {slo.name!r} ({type(sli).__name__[:-3].lower()})"),
            )
            return

    def buckets(self, value: Any) -> Buckets:
        if value is _MISSING or value is None:
            return {}
        mapping = self.mapping(("buckets",), value, tuple(catalog.PHASES))
        result: dict[str, tuple[float, ...]] = {}
        for phase, bounds in (mapping or {}).items():
            if phase not in catalog.PHASES:
                continue
            path = ("buckets", phase)
            if not slo_buckets.positive_bounds(bounds):
                self.problem(path, "a non-empty list of positive finite numbers (seconds)", bounds)
            elif not slo_buckets.increasing(bounds):
                self.problem(path, "bounds in strictly increasing order", _Found(str(bounds)))
            else:
                result[phase] = tuple(float(b) for b in bounds)
        return result

    def slos(self, value: Any, period: int | None, buckets: Buckets) -> list[SLO]:
        if not isinstance(value, list) or not value:
            self.problem(("slos",), "a non-empty list of SLOs", value)
            return []
        slos: list[SLO] = []
        names: set[str] = set()
        for index, item in enumerate(value):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in names:
                self.problem(
                    ("slos", index, "name"), "a name unique in this file", _Found(f"{name!r} again")
                )
            if isinstance(name, str):
                names.add(name)
            slo = self.slo(("slos", index), item, period, buckets)
            if slo is not None:
                slos.append(slo)
        return slos

    def slo(self, path: Path_, value: Any, period: int | None, buckets: Buckets) -> SLO | None:
        fields = self.mapping(path, value, _SLO_FIELDS)
        if fields is None:
            return None
        name = self.text((*path, "name"), fields.get("name", _MISSING), NAME, NAME_EXPECTED)
        objective = self.objective((*path, "objective"), fields.get("objective", _MISSING))
        description = fields.get("description", "")
        if not isinstance(description, str):
            self.problem((*path, "description"), "a string", description)
        sli = self.sli((*path, "sli"), fields.get("sli", _MISSING), buckets)
        alerting = self.alerting((*path, "alerting"), fields.get("alerting", _MISSING))
        if name is None or objective is None or sli is None or alerting is None:
            return None
        slo = SLO(
            name, objective, sli, alerting,
            description if isinstance(description, str) else "",
            period or burnrate.REFERENCE_PERIOD,
        )  # fmt: skip
        if period is not None:
            self.feasible(path, slo, period)
        return slo

    def objective(self, path: Path_, value: Any) -> Fraction | None:
        if not is_number(value) or not 0 < value < 100:
            self.problem(path, "a percentage between 0 and 100 (exclusive), such as 99.9", value)
            return None
        return Fraction(Decimal(str(value)))

    def sli(self, path: Path_, value: Any, buckets: Buckets) -> SLI | None:
        fields = self.mapping(path, value, _SLI_KINDS)
        if fields is None:
            return None
        kinds = [kind for kind in fields if kind in _SLI_KINDS]
        if len(kinds) != 1:
            found = "none" if not kinds else " and ".join(kinds)
            self.problem(path, f"exactly one of {', '.join(_SLI_KINDS)}", _Found(found))
            return None
        kind = kinds[0]
        build: Callable[[Path_, Any, Buckets], SLI | None] = getattr(self, f"sli_{kind}")
        return build((*path, kind), fields[kind], buckets)

    def sli_availability(self, path: Path_, value: Any, buckets: Buckets) -> SLI | None:
        if value is None:
            return AvailabilitySLI()
        fields = self.mapping(path, value, ("source",))
        if fields is None:
            return None
        source = self.view((*path, "source"), fields.get("source", model.SERVER))
        return None if source is None else AvailabilitySLI(source)

    def view(self, path: Path_, value: Any, phase: str | None = None) -> str | None:
        """Whose view an SLI reads: the server's (default) or the client's."""
        if value not in model.SOURCES:
            self.problem(path, f"one of {', '.join(model.SOURCES)}", value)
            return None
        if value == model.CLIENT and phase is not None and phase not in catalog.CLIENT_PHASES:
            self.problem(
                path,
                f"server for phase {phase}: clients see only {', '.join(catalog.CLIENT_PHASES)}",
                value,
            )
            return None
        return str(value)

    def sli_latency(self, path: Path_, value: Any, buckets: Buckets) -> SLI | None:
        fields = self.mapping(path, value, ("phase", "histogram", "threshold", "source"))
        if fields is None:
            return None
        if ("phase" in fields) == ("histogram" in fields):
            self.problem(
                path,
                "exactly one of phase (an LLM phase) and histogram (your own histogram)",
                _Found("both" if "phase" in fields else "neither"),
            )
            return None
        threshold = self.threshold((*path, "threshold"), fields.get("threshold", _MISSING))
        if "histogram" in fields:
            histogram = self.histogram((*path, "histogram"), fields["histogram"])
            if "source" in fields:
                self.problem(
                    (*path, "source"),
                    "no source with histogram (the histogram is the view)",
                    fields["source"],
                )
                return None
            if histogram is None or threshold is None:
                return None
            return LatencySLI("", threshold, model.SERVER, histogram)
        phase = fields["phase"]
        if phase not in catalog.PHASES:
            self.problem((*path, "phase"), f"one of {', '.join(catalog.PHASES)}", phase)
            return None
        source = self.view((*path, "source"), fields.get("source", model.SERVER), phase)
        if threshold is None or source is None:
            return None
        bounds = buckets.get(phase, catalog.PHASES[phase].buckets)
        if not any(math.isclose(float(threshold), b, rel_tol=1e-9) for b in bounds):
            self.misaligned(
                (*path, "threshold"), phase, float(threshold), bounds, fields["threshold"]
            )
            return None
        return LatencySLI(phase, threshold, source)

    def threshold(self, path: Path_, raw: Any) -> Fraction | None:
        if isinstance(raw, str):
            threshold = duration.parse(raw)
        elif is_number(raw) and math.isfinite(raw):
            threshold = Fraction(Decimal(str(raw)))
        else:
            threshold = None
        if threshold is None or threshold <= 0:
            self.problem(path, "a positive duration such as 500ms or 2s (a number is seconds)", raw)
            return None
        return threshold

    def histogram(self, path: Path_, raw: Any) -> selector.Selector | None:
        """A histogram by its base name (without _bucket or _count) and matchers."""
        expected = (
            "a histogram's base name and matchers, such as "
            'http_request_duration_seconds{job="api"}'
        )
        if not isinstance(raw, str):
            self.problem(path, expected, raw)
            return None
        try:
            parsed = selector.parse(raw)
        except ValueError as error:
            self.problem(path, str(error), raw)
            return None
        if parsed.metric.endswith(("_bucket", "_count", "_sum")):
            self.problem(path, f"{expected} (the base name: no _bucket, _count or _sum)", raw)
            return None
        if any(m.label == catalog.LE for m in parsed.matchers):
            self.problem(path, f"{expected}, without le (the threshold sets it)", raw)
            return None
        return parsed

    def sli_goodput(self, path: Path_, value: Any, buckets: Buckets) -> SLI | None:
        fields = self.mapping(path, value, ("ttft", "tpot"))
        if fields is None:
            return None
        targets = {
            key: self.threshold((*path, key), fields[key])
            for key in ("ttft", "tpot")
            if key in fields
        }
        if not fields:
            self.problem(path, "a ttft or a tpot target (or both)", _Found("neither"))
        if not fields or None in targets.values():
            return None
        return GoodputSLI(targets.get("ttft"), targets.get("tpot"))

    def misaligned(
        self, path: Path_, phase: str, threshold: float, bounds: tuple[float, ...], raw: Any
    ) -> None:
        below = [b for b in bounds if b < threshold]
        above = [b for b in bounds if b > threshold]
        nearest = " and ".join(_fmt(b) for b in (below[-1:] + above[:1]))
        self.problem(
            path,
            f"a bound of the {phase} histogram's buckets (nearest: {nearest}), since a latency "
            "SLI only counts requests exactly at a bucket bound",
            raw,
            f"fix: use {nearest.replace(' and ', ' or ')} seconds, or add {_fmt(threshold)} to "
            f"buckets.{phase} in this file and start vLLM with --custom-histogram-buckets "
            f'"$(llm-slo vllm-args {self.source})"',
        )

    def sli_ratio(self, path: Path_, value: Any, buckets: Buckets) -> SLI | None:
        fields = self.mapping(path, value, ("errors", "good", "total"))
        if fields is None:
            return None
        if ("errors" in fields) == ("good" in fields):
            both = "both" if "errors" in fields else "neither"
            self.problem(path, "exactly one of errors and good (with total)", _Found(both))
            return None
        numerator = "errors" if "errors" in fields else "good"
        parsed = {}
        for key in (numerator, "total"):
            raw = fields.get(key, _MISSING)
            if not isinstance(raw, str):
                self.problem(
                    (*path, key), 'a series selector such as http_requests_total{code="500"}', raw
                )
                continue
            try:
                parsed[key] = selector.parse(raw)
            except ValueError as error:
                self.problem((*path, key), str(error), raw)
        if len(parsed) != 2:
            return None
        if parsed[numerator] == parsed["total"]:
            kind = "bad" if numerator == "errors" else "good"
            self.problem(
                (*path, numerator), f"a selector of the {kind} events only, unlike total",
                _Found("the same selector as total"),
            )  # fmt: skip
            return None
        return RatioSLI(parsed[numerator], parsed["total"], good=numerator == "good")

    def alerting(self, path: Path_, value: Any) -> Alerting | None:
        if value is _MISSING or value is None:
            return Alerting()
        fields = self.mapping(path, value, _ALERTING_FIELDS)
        if fields is None:
            return None
        switches = {}
        for key in ("page", "ticket"):
            switch = fields.get(key, True)
            if not isinstance(switch, bool):
                self.problem((*path, key), "true or false", switch)
            switches[key] = switch is not False
        runbook = fields.get("runbook_url", "")
        if not isinstance(runbook, str) or (runbook and not re.match(r"^https?://\S+$", runbook)):
            self.problem((*path, "runbook_url"), "an http(s) URL", runbook)
            runbook = ""
        labels = self.labels((*path, "labels"), fields.get("labels", _MISSING), RESERVED_LABELS)
        for name in sorted(set(labels) & set(self.group_by_labels)):
            # A group_by label set again on the alert gives every group's alert the same
            # label set: Prometheus fails the rule ("vector contains metrics with the same
            # labelset") as soon as two groups burn, and no alert fires at all.
            self.problem(
                (*path, "labels", name),
                "a label not also in group_by (each group's alert carries its own value)",
                _Found(f"the label {name!r}"),
            )
        annotations = self.labels(
            (*path, "annotations"), fields.get("annotations", _MISSING), frozenset({"runbook_url"})
        )
        return Alerting(
            page=switches["page"],
            ticket=switches["ticket"],
            runbook_url=runbook,
            labels=MappingProxyType(dict(sorted(labels.items()))),
            annotations=MappingProxyType(dict(sorted(annotations.items()))),
        )

    def feasible(self, path: Path_, slo: SLO, period: int) -> None:
        """Refuse an alert tier that could never fire: its threshold is above 100 % errors."""
        for window in slo.alert_windows:
            needed = burnrate.threshold(window, period, slo.error_budget)
            if needed >= 1:
                self.problem(
                    (*path, "objective"),
                    f"an objective whose {window.severity} tier over "
                    f"{duration.promql(window.long)} can fire (it needs an error ratio above "
                    f"{float(needed):.0%})",
                    float(slo.objective),
                    f"fix: raise the objective or set alerting.{window.severity}: false",
                )
                return


def _balanced_template(text: str) -> bool:
    """Whether every `{{` closes with `}}` around a non-empty action, and no `}}` is left
    over: the part of Go's template syntax a Python check can judge soundly (what
    functions exist is left to promtool, run before writing when it is installed)."""
    rest = text
    while (start := rest.find("{{")) != -1:
        if "}}" in rest[:start]:
            return False
        end = rest.find("}}", start + 2)
        if end == -1 or not rest[start + 2 : end].strip(" -"):
            return False
        rest = rest[end + 2 :]
    return "}}" not in rest


class _Found(str):
    """A `found` text written by the checker itself, shown as is."""


_TOP_FIELDS = (
    "apiVersion", "service", "period", "labels", "selector", "group_by", "buckets",
    "runbook_base_url", "dashboard_base_url", "include", "deploy", "slos",
)  # fmt: skip
_SLO_FIELDS = ("name", "objective", "description", "sli", "alerting")
_DEPLOY_FIELDS = ("namespace", "engine", "model", "image", "gpus", "replicas", "pools")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
NON_EMPTY = re.compile(r"\S.*")
PINNED_IMAGE = re.compile(r"[\w.\-/:]+:(?!latest$)[\w.\-]+")
_SLI_KINDS = ("availability", "latency", "goodput", "ratio")
_ALERTING_FIELDS = ("page", "ticket", "runbook_url", "labels", "annotations")
