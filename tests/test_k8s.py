"""deploy/kubernetes/ from the SLO file: every manifest valid against the Kubernetes schemas
(kubernetes-validate, strict) or its CRD's (tests/fixtures/crds, strict), the PromQL in
them parses and reads only catalog metrics or generated rules, the pods are locked down,
and the committed files are what `make` writes."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_slo_stack.cli import command
from llm_slo_stack.exporters import catalog
from llm_slo_stack.k8s import engines, manifests
from llm_slo_stack.rules import alertmanager, generator, writer
from llm_slo_stack.slo import spec
from tests.support.paths import FIXTURES, ROOT
from tests.support.promtool import run as run_promtool
from tests.support.specs import VALID

SPEC_PATH = ROOT / "slo" / "default.yaml"
DEFAULT = spec.load(SPEC_PATH, "slo/default.yaml")
KUBERNETES = "1.33.0"  # the Kubernetes version kubernetes-validate checks against
OUT = ROOT / "deploy" / "kubernetes"


def generated() -> dict[str, str]:
    rule = writer.files(DEFAULT)[f"{DEFAULT.service}.prometheusrule.yaml"]
    counters = (ROOT / "compose" / "dcgm-counters.csv").read_text()
    routing = yaml.safe_load(writer.shared_files([DEFAULT])[alertmanager.FILE])
    return manifests.files(DEFAULT, SPEC_PATH.read_text(), counters, rule, routing)


def resources() -> list[dict[str, Any]]:
    found = []
    for name, text in generated().items():
        if "kustomization" not in name:
            found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


def strict(schema: Any) -> Any:
    """The schema with every object closed: a field it does not name is an error (the API
    server would prune it silently), unless the schema keeps unknown fields on purpose."""
    if isinstance(schema, dict):
        closed = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in closed
            and "additionalProperties" not in closed
            and not closed.get("x-kubernetes-preserve-unknown-fields")
        ):
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted((FIXTURES / "crds").glob("*.json.gz")):
        data = json.loads(gzip.decompress(path.read_bytes()))
        found[(data["apiVersion"], data["kind"])] = strict(data["schema"])
    return found


def crd_errors(
    resource: dict[str, Any], schemas: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    import jsonschema

    schema = schemas[(resource["apiVersion"], resource["kind"])]
    body = {k: v for k, v in resource.items() if k != "metadata"}  # ObjectMeta is the server's
    validator = jsonschema.Draft7Validator(schema)
    return [f"{resource['kind']}/{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(body)]  # fmt: skip


def test_every_manifest_is_valid_against_its_schema() -> None:
    import kubernetes_validate

    schemas = crd_schemas()
    kinds = set()
    for resource in resources():
        kinds.add(resource["kind"])
        if (resource["apiVersion"], resource["kind"]) in schemas:
            assert crd_errors(resource, schemas) == []
        else:
            kubernetes_validate.validate(resource, KUBERNETES, strict=True)
    assert kinds == {"ConfigMap", "Deployment", "Service", "DaemonSet", "ServiceMonitor",
                     "PodMonitor", "PrometheusRule", "AlertmanagerConfig", "ScaledObject",
                     "HorizontalPodAutoscaler", "AnalysisTemplate", "Rollout"}  # fmt: skip


def test_the_schema_checks_fail_on_a_wrong_field() -> None:
    """Both checks can fail: a misspelt Deployment field and a misspelt trigger field."""
    import kubernetes_validate

    by_kind = {r["kind"]: r for r in resources()}
    deployment = json.loads(json.dumps(by_kind["Deployment"]))
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    scaled = json.loads(json.dumps(by_kind["ScaledObject"]))
    scaled["spec"]["minReplicas"] = 1
    assert any("minReplicas" in e for e in crd_errors(scaled, crd_schemas()))


def queries() -> list[str]:
    found = []
    for resource in resources():
        if resource["kind"] == "ScaledObject":
            found += [t["metadata"]["query"] for t in resource["spec"]["triggers"]]
        elif resource["kind"] == "AnalysisTemplate":
            found += [m["provider"]["prometheus"]["query"] for m in resource["spec"]["metrics"]]
    return found


def test_every_query_parses_and_reads_catalog_metrics_or_generated_rules(
    tmp_path: Path, promtool: str
) -> None:
    every = queries()
    assert len(every) == 2 + 3 + 1 + len(DEFAULT.slos)  # waiting, KV, 3 latency burns, queue
    rules = [{"record": f"k8s_check:{i}", "expr": q} for i, q in enumerate(every)]
    path = tmp_path / "k8s.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "k8s-queries", "rules": rules}]}))
    run = run_promtool(promtool, "check", "rules", path)
    assert run.returncode == 0, run.stdout + run.stderr
    known = {m.name for m in catalog.METRICS}
    known |= {
        r["record"] for g in generator.rule_groups(DEFAULT) for r in g["rules"] if "record" in r
    }
    for query in every:
        names = set(re.findall(r"([a-zA-Z_:][\w:]*)\{", query))
        assert names and names <= known, (query, names - known)


def test_the_scaler_adds_replicas_on_any_trigger_and_removes_them_slowly() -> None:
    (scaled,) = [r for r in resources() if r["kind"] == "ScaledObject"]
    behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 600  # model loads take minutes
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] <= 60
    names = {t["name"] for t in scaled["spec"]["triggers"]}
    assert {"waiting-requests", "kv-cache", "burn-ttft", "queue-p99"} <= names
    assert DEFAULT.deploy is not None
    assert scaled["spec"]["minReplicaCount"] == DEFAULT.deploy.replicas


def test_every_container_is_locked_down() -> None:
    for resource in resources():
        if resource["kind"] not in ("Deployment", "DaemonSet"):
            continue
        pod = resource["spec"]["template"]["spec"]
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            # DCGM reads profiling counters: SYS_ADMIN is all it may add back.
            assert context["capabilities"].get("add", []) in ([], ["SYS_ADMIN"]), container["name"]
            assert container["image"].rpartition(":")[2] not in ("", "latest"), container["image"]
            assert "resources" in container and "readinessProbe" in container, container["name"]
        if resource["kind"] == "Deployment":
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert all(c["securityContext"]["runAsNonRoot"] for c in pod["containers"])


def test_each_overlay_patches_the_base_engine_for_its_own() -> None:
    files = generated()
    (deployment,) = [r for r in resources() if r["kind"] == "Deployment"]
    base = {c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    images = set()
    for name, engine in engines.ENGINES.items():
        kustomization = yaml.safe_load(files[f"overlays/{name}/kustomization.yaml"])
        assert kustomization["resources"] == ["../../base"]
        (patch,) = [yaml.safe_load(p["patch"]) for p in kustomization["patches"]]
        # kustomize finds the patch's target by kind, name and namespace.
        assert (patch["kind"], patch["metadata"]) == (
            "Deployment",
            {
                "name": deployment["metadata"]["name"],
                "namespace": deployment["metadata"]["namespace"],
            },
        )
        containers = {c["name"]: c for c in patch["spec"]["template"]["spec"]["containers"]}
        assert set(containers) <= base
        assert containers["engine"]["image"] == engine.image
        metrics_target = containers["metrics"]["args"][2]
        assert metrics_target == f"http://127.0.0.1:{engine.metrics_port}/metrics"
        images.add(engine.image)
    assert len(images) == len(engines.ENGINES)


def test_the_committed_manifests_are_fresh() -> None:
    for name, text in generated().items():
        assert (OUT / name).read_text() == text, f"stale deploy/kubernetes/{name}: run make"


def test_a_spec_without_deploy_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "chat.yaml"
    path.write_text(VALID)
    assert command.main(["k8s", str(path), "--out", str(tmp_path / "out")]) == 1
    assert "deploy: expected a section with namespace, engine and model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_hpa_alternative_reads_the_same_queries_through_prometheus_adapter() -> None:
    by_kind = {r["kind"]: r for r in resources()}
    adapter = [r for r in resources() if r["kind"] == "ConfigMap"
               and r["metadata"]["name"] == "prometheus-adapter-llm-slo"]  # fmt: skip
    rules = yaml.safe_load(adapter[0]["data"]["config.yaml"])["externalRules"]
    triggers = by_kind["ScaledObject"]["spec"]["triggers"]
    assert [r["metricsQuery"] for r in rules] == [t["metadata"]["query"] for t in triggers]
    served = {r["name"]["as"] for r in rules}
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert {m["external"]["metric"]["name"] for m in hpa["metrics"]} == served
    assert hpa["behavior"] == by_kind["ScaledObject"]["spec"]["advanced"][
        "horizontalPodAutoscalerConfig"]["behavior"]  # fmt: skip
    for rule in rules:  # the series prometheus-adapter discovers the metric by is one it reads
        assert rule["seriesQuery"] in rule["metricsQuery"]


def test_the_alertmanager_config_routes_and_inhibits_as_the_generated_fragment() -> None:
    (config,) = [r for r in resources() if r["kind"] == "AlertmanagerConfig"]
    fragment = yaml.safe_load(writer.shared_files([DEFAULT])[alertmanager.FILE])
    route = config["spec"]["route"]
    assert route["groupBy"] == fragment["route"]["group_by"]
    assert [(r["receiver"], r["matchers"]) for r in route["routes"]] == [
        ("page", [{"name": "severity", "value": "page", "matchType": "="}]),
        ("ticket", [{"name": "severity", "value": "ticket", "matchType": "="}]),
    ]
    (inhibit,) = config["spec"]["inhibitRules"]
    assert inhibit["equal"] == fragment["inhibit_rules"][0]["equal"]
    receivers = {r["name"]: r for r in config["spec"]["receivers"]}
    assert receivers["page"]["pagerdutyConfigs"][0]["routingKey"]["name"] == manifests.SECRET
    assert receivers["ticket"]["slackConfigs"][0]["apiURL"]["name"] == manifests.SECRET


def test_an_unwritable_out_dir_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / "base").mkdir(parents=True)
    (out / "base" / "serving.yaml").mkdir()  # a folder where a file must go
    code = command.main(["k8s", str(SPEC_PATH), "--out", str(out),
                         "--dcgm-counters", str(ROOT / "compose" / "dcgm-counters.csv")])  # fmt: skip
    assert code == command.EXIT_WRITE
    assert "cannot write" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["base", "serving.yaml"]


def test_a_second_run_leaves_every_file_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["k8s", str(SPEC_PATH), "--out", str(tmp_path),
            "--dcgm-counters", str(ROOT / "compose" / "dcgm-counters.csv")]  # fmt: skip
    assert command.main(argv) == 0
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.yaml")}
    capsys.readouterr()
    assert command.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.yaml")} == stamps
    assert capsys.readouterr().out == f"{len(stamps)} file(s) unchanged\n"
