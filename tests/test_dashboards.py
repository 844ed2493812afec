"""The generated dashboards: Grafana's dashboard model, the names they read, valid PromQL."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_slo_stack.dashboards import generator as dashboards
from llm_slo_stack.dashboards import panels as panels_module
from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules import generator, gpu
from llm_slo_stack.slo import conventions, spec
from tests.support.paths import FIXTURES as FIXTURES_DIR
from tests.support.paths import GOLDEN, ROOT, golden_cases
from tests.support.promtool import run as run_promtool

DEFAULT = spec.loads((ROOT / "slo" / "default.yaml").read_text(), "slo/default.yaml")
BOARDS = {**dashboards.files(DEFAULT), **dashboards.shared_files([DEFAULT])}
VARIABLES = {"$service": DEFAULT.service, "$model": ".*", "$instance": ".*", "$__all": ".*",
             "$__rate_interval": "1m"}  # fmt: skip


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in BOARDS.items()}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p["targets"]]


def unit(panel: dict[str, Any]) -> str | None:
    unit_name: str | None = panel["fieldConfig"]["defaults"].get("unit")
    return unit_name


@pytest.mark.parametrize("name", BOARDS)
def test_grafanas_dashboard_model(name: str) -> None:
    board = boards()[name]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    boxes = [
        (p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"], p["gridPos"]["h"])
        for p in board["panels"]
    ]
    for (x1, y1, w1, h1), (x2, y2, w2, h2) in itertools.combinations(boxes, 2):
        assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1, "panels overlap"
    assert all(x + w <= panels_module.WIDTH for x, _, w, _ in boxes)
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables and "instance" in variables
    for panel in panels(board):
        assert panel["datasource"]["uid"] == "${datasource}"  # the datasource variable
        assert panel["description"] and unit(panel), panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, (panel["title"], used)
    assert board["uid"] == {"gpu.json": conventions.dashboard_uid(None, "gpu"),
                            "chat-serving.json": conventions.dashboard_uid(DEFAULT, "serving"),
                            "chat-slo-overview.json": conventions.dashboard_uid(DEFAULT, "slo")}[name]  # fmt: skip


# Label names the dashboards group or join by.
LABELS = {catalog.LE, catalog.MODEL, catalog.OUTCOME, catalog.GPU, catalog.POD, catalog.NAMESPACE}


def known_names() -> set[str]:
    names = {"ALERTS"}
    for metric in (
        *catalog.METRICS,
        *catalog.GPU_METRICS,
        *catalog.EXPORTER_METRICS,
        *catalog.GPU_EXPORTER_METRICS,
        *catalog.CLIENT_METRICS,
    ):
        names |= {metric.name, metric.bucket, metric.count, metric.sum}
    groups = generator.rule_groups(DEFAULT) + gpu.rule_groups(
        gpu.Links(conventions.default_runbook_base(), DEFAULT.dashboard_base_url)
    )
    names |= {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    return names


def test_every_name_a_dashboard_reads_exists_in_the_catalog_or_the_rules() -> None:
    known = known_names()
    functions = {
        "sum",
        "by",
        "rate",
        "increase",
        "max",
        "min",
        "histogram_quantile",
        "label_values",
        "on",
        "group_left",
        "group",
        "topk",
        "clamp_min",
    }
    for name, board in boards().items():
        for expr in exprs(board):
            cleaned = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
            cleaned = re.sub(r"\[[^\]]*\]", "", cleaned)  # nor are ranges such as [5m]
            cleaned = re.sub(r"\{[^}]*\}", "", cleaned)  # nor are label matchers
            cleaned = re.sub(r"\([^()]*\)\s*\(", "(", cleaned)  # `by (le)` grouping labels
            words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", cleaned)) - functions
            words = {
                w for w in words if not re.fullmatch(r"\d+[smhd]?|and|or", w) and w not in LABELS
            }
            assert words <= known, (name, expr, words - known)


def test_every_target_is_valid_promql(tmp_path: Path, promtool: str) -> None:
    rules = []
    for name, board in boards().items():
        for index, expr in enumerate(exprs(board)):
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            rules.append(
                {
                    "record": f"dashboard_check:{Path(name).stem.replace('-', '_')}:{index}",
                    "expr": expr,
                }
            )
    path = tmp_path / "dashboards.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}))
    run = run_promtool(promtool, "check", "rules", path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rules)} rules found" in run.stdout


def test_generation_is_deterministic() -> None:
    again = {**dashboards.files(spec.loads((ROOT / "slo" / "default.yaml").read_text(), "slo/default.yaml")),
             **dashboards.shared_files([DEFAULT])}  # fmt: skip
    assert again == BOARDS
    for text in BOARDS.values():
        assert text.endswith("\n")
        assert json.loads(text)["description"].startswith("Generated by make")


def test_the_committed_dashboards_are_fresh() -> None:
    for name, text in BOARDS.items():
        assert (
            ROOT / "dashboards" / "generated" / name
        ).read_text() == text, f"stale {name}: run make"


def test_grafana_provisioning_fits_the_dashboards() -> None:
    base = ROOT / "compose" / "grafana" / "provisioning"
    sources = yaml.safe_load((base / "datasources" / "datasources.yaml").read_text())["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    (prom,) = [s for s in sources if s["type"] == "prometheus"]  # the datasource variable's
    # Exemplar dots open their trace in a provisioned trace datasource.
    (destination,) = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert by_uid[destination["datasourceUid"]]["type"] == "tempo"
    assert destination["name"] == "trace_id"
    providers = yaml.safe_load((base / "dashboards" / "llm-slo-stack.yaml").read_text())[
        "providers"
    ]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"].startswith(
        "/var/lib/grafana/"
    )
    for board in boards().values():
        (variable,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert variable["query"] == prom["type"]


# Series that exist only once something happens, which this test does not cause.
EMPTY_WITHOUT_CAUSE = (
    catalog.ALERTS,  # the firing-alerts tables: rows only while an alert fires
    "clamp_min(",  # time to budget exhaustion: empty while nothing burns
    catalog.PREFIX_CACHE_HIT.name,  # vLLM reports it; the simulator has no prefix cache
    catalog.SPEC_DECODE_ACCEPTED.name,  # only with a speculative drafter
    catalog.EXPORTER_SCRAPE_ERRORS.name,  # born with the first failed scrape
)


@pytest.mark.prometheus
def test_every_panel_target_returns_data_from_a_real_prometheus(tmp_path: Path) -> None:
    """Debian's Prometheus with the generated rules, scraping the simulator (started with
    `llm-slo vllm-args`' buckets, as the README says) through the sidecar and the tracing
    proxy, and the GPU exporter on the NVML fake and on dcgm-exporter's fields."""
    import requests
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from llm_slo_stack.exporters.gpu import DcgmCollector, NvmlCollector
    from llm_slo_stack.exporters.nvml import FakeNvml
    from llm_slo_stack.exporters.sidecar import SidecarCollector
    from llm_slo_stack.rules import writer
    from llm_slo_stack.simulator.latency import Profile
    from llm_slo_stack.simulator.metrics import parse_custom_buckets
    from llm_slo_stack.simulator.server import Config, create_app
    from llm_slo_stack.slo import buckets as slo_buckets
    from llm_slo_stack.tracing.middleware import Targets
    from llm_slo_stack.tracing.proxy import create_app as proxy_app
    from tests.support import loopback
    from tests.support.gpus import gpus
    from tests.support.paths import FIXTURES
    from tests.support.prometheus import query
    from tests.support.prometheus import scraping as prometheus
    from tests.support.serving import chat

    for name, text in {**writer.files(DEFAULT), **writer.shared_files([DEFAULT])}.items():
        (tmp_path / "rules" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "rules" / name).write_text(text)
    rule_files = sorted((tmp_path / "rules").glob("*.rules.yaml"))
    custom = parse_custom_buckets(json.dumps(slo_buckets.vllm_families(DEFAULT)))
    fast = Profile(prefill_overhead=0.002, prefill_per_token=0.0, itl=0.001)
    simulator = create_app(
        Config(served_model_name="trace-test", profile=fast, custom_buckets=custom)
    )
    nvml = FakeNvml(gpus())
    nvml.xid_events = [(0, 79)]

    def host(url: str) -> str:
        return url.removeprefix("http://").split("/")[0]

    with (
        loopback.asgi(simulator) as upstream,
        loopback.exporter(SidecarCollector(upstream)) as sidecar,
        loopback.asgi(
            proxy_app(upstream, TracerProvider(), CollectorRegistry(), Targets.from_spec(DEFAULT))
        ) as proxy,
        loopback.exporter(NvmlCollector(nvml)) as nvml_url,
        loopback.http(loopback.payload((FIXTURES / "dcgm.metrics").read_text())) as (dcgm, _),
        loopback.exporter(DcgmCollector(dcgm)) as dcgm_url,
    ):
        for index in range(12):
            chat(proxy, stream=index % 2 == 0)
        jobs = {
            "vllm": [host(sidecar)],
            "proxy": [host(proxy)],
            "gpu": [host(nvml_url), host(dcgm_url)],
        }
        # Kubernetes service discovery's labels on the serving pod, which dcgm-exporter's
        # fixture names too: the GPU dashboard's join needs them.
        pod = {catalog.NAMESPACE: "llm", catalog.POD: "vllm-0"}
        with prometheus(tmp_path, jobs, rule_files, {"vllm": pod}) as url:
            targets = [(name, expr) for name, board in boards().items() for expr in exprs(board)]
            deadline = time.monotonic() + 60
            while True:
                empty = []
                for name, expr in targets:
                    if any(part in expr for part in EMPTY_WITHOUT_CAUSE):
                        continue
                    filled = expr
                    for variable, value in VARIABLES.items():
                        filled = filled.replace(variable, value)
                    if not query(url, filled):
                        empty.append((name, expr))
                if not empty or time.monotonic() > deadline:
                    break
                time.sleep(2)
            exemplars = requests.get(
                f"{url}/api/v1/query_exemplars",
                params={"query": catalog.CLIENT_TIME_TO_FIRST_TOKEN.bucket, "start": "0"},
                timeout=10,
            ).json()["data"]
    assert empty == []
    assert len(targets) > 60
    trace_ids = {e["labels"]["trace_id"] for series in exemplars for e in series["exemplars"]}
    # One per bucket a scrape sees: the requests all land in one bucket before the first.
    # Without exemplar storage (off by default) there would be none.
    assert trace_ids and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids), exemplars


def test_client_side_latency_panels_show_exemplars() -> None:
    serving = boards()[f"{DEFAULT.service}-serving.json"]
    flagged = [t["expr"] for p in panels(serving) for t in p["targets"] if t.get("exemplar")]
    assert len(flagged) == 2 * len(catalog.CLIENT_PHASES)  # p50 and p99 of TTFT, ITL, TPOT, e2e
    client = {m.bucket for m in catalog.CLIENT_PHASES.values()}
    assert all(
        expr.startswith("histogram_quantile(") and any(b in expr for b in client)
        for expr in flagged
    )


def test_the_query_benchmark_compares_each_panel_with_its_raw_form() -> None:
    """bench/queries.py times each panel that reads a recording rule against the raw
    expression the rule stands for: no recorded name may survive the replacement, and the
    rules are backfilled only after every rule they read."""
    from bench import queries

    s = queries.bench_spec()
    groups = generator.rule_groups(s)
    recorded = {rule["record"] for _, rule in queries.recording_rules(groups)}
    forms = queries.raw_forms(s)
    timed = queries.panels(s)
    assert {slo.name for slo in s.slos} == set(queries.SLOS)
    assert len(timed) == 4 * len(s.slos) + len(
        catalog.PHASES
    )  # SLI, budget, exhaustion, burn; phases
    for _, title, targets in timed:
        for target in targets:
            raw = queries.unrecorded(target, forms)
            assert raw != target, title
            assert not queries.reads(raw, recorded), (title, raw)
    done: set[str] = set()
    staged = [r for stage in queries.stages(groups) for g in stage for r in g["rules"]]
    assert len(staged) == len(queries.recording_rules(groups))
    for stage in queries.stages(groups):
        rules = [r for g in stage for r in g["rules"]]
        for rule in rules:
            assert queries.reads(rule["expr"], recorded) <= done, rule["record"]
        done |= {r["record"] for r in rules}


def test_each_slo_shows_its_own_description_on_the_overview() -> None:
    board = json.loads(BOARDS[f"{DEFAULT.service}-slo-overview.json"])
    texts = [str(panel.get("description", "")) for panel in board["panels"]]
    for slo in DEFAULT.slos:
        assert slo.description and any(slo.description in text for text in texts), slo.name


SCHEMAS = FIXTURES_DIR / "grafana-schemas"  # grafana-foundation-sdk's, see its SOURCE.md


def schema_errors(board: dict[str, Any]) -> list[str]:
    """Deviations of a dashboard from Grafana's schemas: the dashboard model, each panel's
    plugin options and field config, each Prometheus query."""
    import jsonschema

    def check(name: str, definition: str, instance: Any, where: str) -> list[str]:
        schema = json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text())
        schema = {**schema, "$ref": f"#/definitions/{definition}"}
        validator = jsonschema.validators.validator_for(schema)(schema)
        return [
            f"{where}/{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(instance)
        ]

    errors = check("dashboard", "Dashboard", board, board["title"])
    for panel in panels(board):
        where = f"{board['title']}: {panel['title']}"
        definitions = json.loads((SCHEMAS / f"{panel['type']}.jsonschema.json").read_text())
        errors += check(panel["type"], "Options", panel["options"], where)
        if "FieldConfig" in definitions["definitions"]:
            custom = panel["fieldConfig"]["defaults"].get("custom", {})
            errors += check(panel["type"], "FieldConfig", custom, where)
        for target in panel["targets"]:
            errors += check("prometheus", "Dataquery", target, where)
    return errors


def every_board() -> dict[str, dict[str, Any]]:
    """The default spec's dashboards and every golden spec's."""
    found = dict(boards())
    for case in golden_cases():
        loaded = spec.load(GOLDEN / case / "spec.yaml")
        found |= {f"{case}/{n}": json.loads(t) for n, t in dashboards.files(loaded).items()}
    return found


def test_every_dashboard_has_no_deviation_from_grafanas_schemas() -> None:
    checked = every_board()
    assert len(checked) >= 15
    assert {b["schemaVersion"] for b in checked.values()} == {42}
    errors = [e for board in checked.values() for e in schema_errors(board)]
    assert errors == []


def test_the_schema_check_finds_a_deviation() -> None:
    """The check can fail: a 2016-era field and a wrong type are each found."""
    board = boards()[f"{DEFAULT.service}-slo-overview.json"]
    board["rows"] = []
    panels(board)[0]["options"]["reduceOptions"]["calcs"] = "lastNotNull"
    errors = schema_errors(board)
    assert len(errors) == 2 and "'rows' was unexpected" in errors[0], errors


def test_heatmaps_draw_bucket_rates_as_buckets() -> None:
    serving = boards()[f"{DEFAULT.service}-serving.json"]
    maps = [p for p in panels(serving) if p["type"] == "heatmap"]
    assert len(maps) == len(catalog.PHASES)
    for panel in maps:
        (target,) = panel["targets"]
        assert target["format"] == "heatmap" and target["legendFormat"] == "{{le}}"
        assert re.fullmatch(
            r"sum by \(le\) \(rate\(\w+_bucket\{[^}]+\}\[\$__rate_interval\]\)\)", target["expr"]
        )
        assert panel["options"]["calculate"] is False


def test_stats_show_the_latest_value_coloured_by_thresholds() -> None:
    overview = boards()[f"{DEFAULT.service}-slo-overview.json"]
    stats = [p for p in panels(overview) if p["type"] == "stat"]
    assert len(stats) == 4 * len(DEFAULT.slos)
    for panel in stats:
        assert panel["options"]["reduceOptions"]["calcs"] == ["lastNotNull"], panel["title"]
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        values = [s["value"] for s in steps[1:]]
        assert steps[0]["value"] is None and values == sorted(values)
    budget = [p for p in stats if p["title"] == "Error budget left"]
    assert [s["color"] for s in budget[0]["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [
        "red",
        "orange",
        "green",
    ]


SERVER_NAMES = {n for m in catalog.METRICS for n in (m.name, m.bucket, m.count, m.sum)}
SERVER_NAMES |= {m.name for m in catalog.EXPORTER_METRICS}


def test_every_raw_server_series_is_read_through_the_specs_selector() -> None:
    """No panel sums a server series over every job: each carries the spec's selector
    (job="vllm" here) and the chosen models; client series have names of their own."""
    selector = ", ".join(f'{k}="{v}"' for k, v in DEFAULT.selector.items())
    read = 0
    for board in boards().values():
        for expr in exprs(board):
            for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", expr):
                if name in SERVER_NAMES:
                    read += 1
                    assert selector in matchers, (name, expr)
    assert read >= 20


def test_per_model_panels_group_by_model_and_filter_on_it() -> None:
    for name in (f"{DEFAULT.service}-slo-overview.json", f"{DEFAULT.service}-serving.json"):
        for panel in panels(boards()[name]):
            if panel["type"] in ("heatmap", "table") or panel["title"].startswith(
                ("Objective", "Inference", "Scrape")
            ):
                continue
            for target in panel["targets"]:
                assert 'model=~"$model"' in target["expr"], (name, panel["title"], target["expr"])
                assert "{{model}}" in target["legendFormat"], (name, panel["title"])


def test_every_alert_link_resolves_to_a_generated_dashboard_panel_and_variable() -> None:
    """Each alert's dashboard_url names a dashboard this generation writes, one of its
    panels, and only variables it has; each of that panel's links is a runbook."""
    from llm_slo_stack.rules import writer

    written = {b["uid"]: b for b in boards().values()}
    rules = {**writer.files(DEFAULT), **writer.shared_files([DEFAULT])}
    alerts = [r for n, t in rules.items() if n.endswith(".rules.yaml")
              for g in yaml.safe_load(t)["groups"] for r in g["rules"] if "alert" in r]  # fmt: skip
    assert len(alerts) > 10
    for alert in alerts:
        url = alert["annotations"]["dashboard_url"]
        match = re.fullmatch(r"http://localhost:3000/d/([\w-]+)\?(.*)", url)
        assert match, url
        board = written[match.group(1)]
        params = dict(part.split("=", 1) for part in match.group(2).split("&"))
        panel_ids = {p["id"]: p for p in board["panels"]}
        target = panel_ids[int(params.pop("viewPanel").removeprefix("panel-"))]
        variables = {v["name"] for v in board["templating"]["list"]}
        assert {k.removeprefix("var-") for k in params} <= variables, url
        for link in target.get("links", []):
            assert "/rules/runbooks/" in link["url"]
        if alert["alert"] == catalog.ALERT_BUDGET_BURN:
            assert target["title"] == "Burn rate per alert window"
            assert alert["labels"][catalog.SLO] in target["targets"][0]["expr"]


def test_every_panel_a_runbook_names_is_on_a_generated_dashboard() -> None:
    """Runbooks point on-call at panels by their titles in bold: each such title is a
    panel of the default spec's dashboards, and each runbook's first look names some."""
    titles = {p["title"] for board in boards().values() for p in panels(board)}
    named = 0
    for runbook in sorted((ROOT / "rules" / "runbooks").glob("*.md")):
        bold = set(re.findall(r"\*\*([^*]+)\*\*", runbook.read_text()))
        bold = {" ".join(b.split()) for b in bold}  # a title may wrap across lines
        assert bold <= titles, (runbook.name, bold - titles)
        named += len(bold)
    assert named >= 20
