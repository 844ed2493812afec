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
from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules import generator, gpu
from llm_slo_stack.slo import conventions, spec
from tests.support.paths import ROOT
from tests.support.promtool import run as run_promtool

DEFAULT = spec.loads((ROOT / "slo" / "default.yaml").read_text(), "slo/default.yaml")
BOARDS = {**dashboards.files(DEFAULT), **dashboards.shared_files([DEFAULT])}
VARIABLES = {"$service": DEFAULT.service, "$model": ".*", "$instance": ".*", "$__all": ".*"}


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in BOARDS.items()}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def exprs(board: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(board) for t in p["targets"]]


def unit(panel: dict[str, Any]) -> str | None:
    return (panel.get("fieldConfig") or {}).get("defaults", {}).get("unit") or (
        panel.get("yAxis") or {}
    ).get("format")


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
    assert all(x + w <= dashboards.WIDTH for x, _, w, _ in boxes)
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables and "instance" in variables
    for panel in panels(board):
        assert panel["datasource"] == dashboards.DATASOURCE  # resolves to the datasource variable
        assert panel["description"] and unit(panel), panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= variables, (panel["title"], used)
    assert board["uid"] == dashboards.uid(*{"gpu.json": ("gpu",), "chat-serving.json": ("chat/serving",),
                                              "chat-slo-overview.json": ("chat/slo",)}[name])  # fmt: skip


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
    groups = generator.rule_groups(DEFAULT) + gpu.rule_groups(conventions.default_runbook_base())
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
    sources = yaml.safe_load((base / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert [s["type"] for s in sources] == ["prometheus"]  # what the datasource variable picks
    providers = yaml.safe_load((base / "dashboards" / "llm-slo-stack.yaml").read_text())[
        "providers"
    ]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"].startswith(
        "/var/lib/grafana/"
    )
    for board in boards().values():
        (variable,) = [v for v in board["templating"]["list"] if v["name"] == "datasource"]
        assert variable["query"] == sources[0]["type"]


@pytest.mark.prometheus
def test_every_panel_target_returns_data_from_a_real_prometheus(tmp_path: Path) -> None:
    """Debian's Prometheus with the generated rules, scraping the simulator (started with
    `llm-slo vllm-args`' buckets, as the README says) through the sidecar and the tracing
    proxy, and the GPU exporter on the NVML fake and on dcgm-exporter's fields."""
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
                    if expr.startswith("ALERTS"):
                        continue  # the firing-alerts tables have rows only while an alert fires
                    filled = expr
                    for variable, value in VARIABLES.items():
                        filled = filled.replace(variable, value)
                    if not query(url, filled):
                        empty.append((name, expr))
                if not empty or time.monotonic() > deadline:
                    break
                time.sleep(2)
    assert empty == []
    assert len(targets) > 60


def test_client_side_latency_panels_show_exemplars() -> None:
    serving = boards()[f"{DEFAULT.service}-serving.json"]
    flagged = [t["expr"] for p in panels(serving) for t in p["targets"] if t.get("exemplar")]
    assert len(flagged) == len(catalog.CLIENT_PHASES)  # TTFT, ITL, TPOT, e2e
    client = {m.bucket for m in catalog.CLIENT_PHASES.values()}
    assert all(
        expr.startswith("histogram_quantile(0.99,") and any(b in expr for b in client)
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
    assert len(timed) == 3 * len(s.slos) + 2 * len(catalog.PHASES)  # SLI, budget, burn; phases
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
