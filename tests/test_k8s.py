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
from llm_slo_stack.slo import conventions, spec
from llm_slo_stack.slo.model import POOL_ENGINES, Spec
from tests.support.paths import FIXTURES, ROOT
from tests.support.promtool import run as run_promtool
from tests.support.specs import VALID

SPEC_PATH = ROOT / "slo" / "default.yaml"
DEFAULT = spec.load(SPEC_PATH, "slo/default.yaml")
POOLED = spec.load(ROOT / "slo" / "disaggregated.yaml", "slo/disaggregated.yaml")
SPECS = pytest.mark.parametrize("spec_", [DEFAULT, POOLED], ids=["one-pool", "pools"])
KUBERNETES = "1.33.0"  # the Kubernetes version kubernetes-validate checks against
OUT = ROOT / "deploy" / "kubernetes"


def generated(spec_: Spec = DEFAULT) -> dict[str, str]:
    rule = writer.files(spec_)[f"{spec_.service}.prometheusrule.yaml"]
    counters = (ROOT / "compose" / "dcgm-counters.csv").read_text()
    routing = yaml.safe_load(writer.shared_files([spec_])[alertmanager.FILE])
    return manifests.files(spec_, (ROOT / spec_.source).read_text(), counters, rule, routing)


def resources(spec_: Spec = DEFAULT) -> list[dict[str, Any]]:
    found = []
    for name, text in generated(spec_).items():
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


@SPECS
def test_every_manifest_is_valid_against_its_schema(spec_: Spec) -> None:
    import kubernetes_validate

    schemas = crd_schemas()
    kinds = set()
    for resource in resources(spec_):
        kinds.add(resource["kind"])
        if (resource["apiVersion"], resource["kind"]) in schemas:
            assert crd_errors(resource, schemas) == []
        else:
            kubernetes_validate.validate(resource, KUBERNETES, strict=True)
    gpu = {"DaemonSet", "PodMonitor"} if spec_.include else set()  # include: [gpu]
    assert kinds == gpu | {"ConfigMap", "Deployment", "Service", "ServiceMonitor",
                           "PrometheusRule", "AlertmanagerConfig", "ScaledObject",
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


def queries(spec_: Spec = DEFAULT) -> list[str]:
    found = []
    for resource in resources(spec_):
        if resource["kind"] == "ScaledObject":
            found += [t["metadata"]["query"] for t in resource["spec"]["triggers"]]
        elif resource["kind"] == "AnalysisTemplate":
            found += [m["provider"]["prometheus"]["query"] for m in resource["spec"]["metrics"]]
    return found


@pytest.mark.parametrize(
    ("spec_", "count"),
    [
        (DEFAULT, 2 + 3 + 1 + len(DEFAULT.slos)),  # waiting, KV, 3 latency burns, queue p99
        # prefill: waiting, the TTFT burn, queue p99; decode: waiting, KV, ITL and e2e burns
        (POOLED, 3 + 4 + len(POOLED.slos)),
    ],
    ids=["one-pool", "pools"],
)
def test_every_query_parses_and_reads_catalog_metrics_or_generated_rules(
    tmp_path: Path, promtool: str, spec_: Spec, count: int
) -> None:
    every = queries(spec_)
    assert len(every) == count
    rules = [{"record": f"k8s_check:{i}", "expr": q} for i, q in enumerate(every)]
    path = tmp_path / "k8s.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "k8s-queries", "rules": rules}]}))
    run = run_promtool(promtool, "check", "rules", path)
    assert run.returncode == 0, run.stdout + run.stderr
    known = {m.name for m in catalog.METRICS}
    known |= {m.bucket for m in catalog.METRICS if m.kind == catalog.HISTOGRAM}
    known |= {
        r["record"] for g in generator.rule_groups(spec_) for r in g["rules"] if "record" in r
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


@SPECS
def test_every_container_is_locked_down(spec_: Spec) -> None:
    for resource in resources(spec_):
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


@SPECS
def test_the_hpa_alternative_reads_the_same_queries_through_prometheus_adapter(
    spec_: Spec,
) -> None:
    found = resources(spec_)
    adapter = [r for r in found if r["kind"] == "ConfigMap"
               and r["metadata"]["name"] == "prometheus-adapter-llm-slo"]  # fmt: skip
    rules = yaml.safe_load(adapter[0]["data"]["config.yaml"])["externalRules"]
    scalers = {r["spec"]["scaleTargetRef"]["name"]: r["spec"] for r in found
               if r["kind"] == "ScaledObject"}  # fmt: skip
    triggers = [t for scaled in scalers.values() for t in scaled["triggers"]]
    assert [r["metricsQuery"] for r in rules] == [t["metadata"]["query"] for t in triggers]
    served = {r["name"]["as"]: r["metricsQuery"] for r in rules}
    assert len(served) == len(rules)  # one external metric per trigger, none shadowed
    hpas = [r["spec"] for r in found if r["kind"] == "HorizontalPodAutoscaler"]
    assert sorted(h["scaleTargetRef"]["name"] for h in hpas) == sorted(scalers)
    for hpa in hpas:  # each HPA reads its own pool's triggers, with the same behaviour
        scaled = scalers[hpa["scaleTargetRef"]["name"]]
        read = [served[m["external"]["metric"]["name"]] for m in hpa["metrics"]]
        assert read == [t["metadata"]["query"] for t in scaled["triggers"]]
        assert hpa["behavior"] == scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
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


def _pooled(kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources(POOLED) if r["kind"] == kind}


def test_each_pool_scales_on_its_own_engines_and_phases() -> None:
    """The prefill pool on its queue and the TTFT SLO's burn, the decode pool on its KV
    cache and the burns of the SLOs on decoding (ITL, e2e), each on its own series."""
    assert POOLED.deploy is not None
    scalers = _pooled("ScaledObject")
    assert sorted(scalers) == ["chat-decode", "chat-prefill"]
    for pool in POOLED.deploy.pools:
        scaled = scalers[f"chat-{pool.name}"]["spec"]
        assert scaled["scaleTargetRef"] == {"name": f"chat-{pool.name}"}
        assert scaled["minReplicaCount"] == pool.replicas
    triggers = {
        name: {t["name"]: t["metadata"]["query"] for t in scalers[name]["spec"]["triggers"]}
        for name in scalers
    }
    assert sorted(triggers["chat-prefill"]) == [
        "prefill-burn-ttft", "prefill-queue-p99", "prefill-waiting-requests"]  # fmt: skip
    assert sorted(triggers["chat-decode"]) == [
        "decode-burn-e2e", "decode-burn-itl", "decode-kv-cache", "decode-waiting-requests"]  # fmt: skip
    prefill_job = f'job="vllm-prefill", {catalog.POOL}="prefill"'
    assert prefill_job in triggers["chat-prefill"]["prefill-waiting-requests"]
    assert prefill_job in triggers["chat-prefill"]["prefill-queue-p99"]
    assert f'job="vllm", {catalog.POOL}="decode"' in triggers["chat-decode"]["decode-kv-cache"]
    assert 'slo="ttft"' in triggers["chat-prefill"]["prefill-burn-ttft"]


def test_with_pools_the_rules_count_each_request_once() -> None:
    """Both pools' engines count every request; only the decode pool's are scraped under
    the job the rules read, the prefill pool's under one no rule selects."""
    monitors = _pooled("ServiceMonitor")
    jobs = {}
    for name, monitor in monitors.items():
        for endpoint in monitor["spec"]["endpoints"]:
            labels = {r["targetLabel"]: r["replacement"] for r in endpoint["relabelings"]}
            jobs[(name, endpoint["port"])] = labels
    assert jobs == {
        ("chat", "proxy"): {"job": conventions.PROXY_JOB},
        ("chat-prefill", "metrics"): {"job": "vllm-prefill", catalog.POOL: "prefill"},
        ("chat-decode", "metrics"): {"job": "vllm", catalog.POOL: "decode"},
    }
    engine_metrics = {m.name for m in catalog.METRICS} - {m.name for m in catalog.CLIENT_METRICS}
    read = 0
    for group in generator.rule_groups(POOLED):
        for rule in group["rules"]:
            for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", rule["expr"]):
                if name.removesuffix("_bucket").removesuffix("_count") in engine_metrics:
                    read += 1
                    assert 'job="vllm"' in matchers, (rule.get("record"), matchers)
    assert read > 0


def test_with_pools_the_proxy_fronts_the_router_and_each_pool_runs_its_part() -> None:
    assert POOLED.deploy is not None
    deployments = _pooled("Deployment")
    assert sorted(deployments) == ["chat", "chat-decode", "chat-prefill"]

    def containers(name: str) -> dict[str, Any]:
        pod = deployments[name]["spec"]["template"]["spec"]
        return {c["name"]: c for c in pod["containers"]}

    (proxy,) = containers("chat").values()
    assert proxy["args"][proxy["args"].index("--upstream") + 1] == POOLED.deploy.router
    for pool in POOLED.deploy.pools:
        pod = containers(f"chat-{pool.name}")
        assert sorted(pod) == ["engine", "metrics"]  # the client's view is the front proxy's
        args = pod["engine"]["args"]
        assert args[args.index("--kv-transfer-config") + 1] == (
            '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
        )
        assert pod["engine"]["resources"]["limits"]["nvidia.com/gpu"] == pool.gpus
        assert deployments[f"chat-{pool.name}"]["spec"]["replicas"] == pool.replicas
    services = _pooled("Service")
    assert services["chat"]["spec"]["selector"] == deployments["chat"]["spec"]["selector"][
        "matchLabels"]  # fmt: skip
    for name in ("chat-prefill", "chat-decode"):  # what the P/D router sends to
        assert [p["name"] for p in services[name]["spec"]["ports"]] == ["api", "metrics"]
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments.values()]
    for one in selectors:  # no Deployment's pods are another's
        assert sum(one.items() <= other.items() for other in selectors) == 1


def test_the_engines_the_spec_lets_run_apart_are_those_with_pool_arguments() -> None:
    with_pools = {n for n, e in engines.ENGINES.items() if e.pool_args is not engines.runs_whole}
    assert with_pools == set(POOL_ENGINES)
    with pytest.raises(ValueError, match="prefill and decode apart"):
        engines.ENGINES["tgi"].pool_args("prefill")


def test_with_pools_the_overlays_patch_each_pool_for_its_engine() -> None:
    files = generated(POOLED)
    assert sorted(n for n in files if n.startswith("overlays/")) == [
        "overlays/sglang/kustomization.yaml", "overlays/vllm/kustomization.yaml"]  # fmt: skip
    kustomization = yaml.safe_load(files["overlays/sglang/kustomization.yaml"])
    patches = [yaml.safe_load(p["patch"]) for p in kustomization["patches"]]
    assert [p["metadata"]["name"] for p in patches] == ["chat-prefill", "chat-decode"]
    for patch, pool in zip(patches, ("prefill", "decode"), strict=True):
        engine = patch["spec"]["template"]["spec"]["containers"][0]
        assert engine["args"][-2:] == ["--disaggregation-mode", pool]


POOLED_TEXT = (ROOT / "slo" / "disaggregated.yaml").read_text()
POOL_MISTAKES = [
    ("engine: vllm", "engine: tgi", "deploy.engine", "runs prefill and decode apart"),
    ("    router: http://pd-router.llm.svc:8000  # your P/D router (vLLM's or llm-d's)\n", "",
     "deploy.pools.router", "the P/D router's URL"),
    ("{phase: ttft, threshold: 2s, source: client}", "{phase: ttft, threshold: 2s}",
     "slos[1].sli", "found ttft from the server"),
    ("availability: {source: client}", "availability: {}", "slos[0].sli",
     "found availability from the server"),
    ("selector:\n  job: vllm\n", "", "selector", "a job with deploy.pools"),
    ("decode: {replicas: 4, gpus: 1}", "decode: {replica: 4}", "deploy.pools.decode.replica",
     "unknown field"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "path", "words"), POOL_MISTAKES)
def test_a_pooled_spec_that_cannot_count_each_request_once_is_a_clear_error(
    old: str, new: str, path: str, words: str
) -> None:
    assert old in POOLED_TEXT
    with pytest.raises(spec.SpecError) as raised:
        spec.loads(POOLED_TEXT.replace(old, new), "pooled.yaml")
    (problem,) = raised.value.problems
    assert problem.path == path and words in str(problem), str(problem)
