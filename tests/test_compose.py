"""compose/: the file validates offline with Debian's docker-compose for both profiles,
every mounted path exists, every image is pinned, and the generated configs it mounts are
fresh and name the services the file defines."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_slo_stack.demo import configs
from llm_slo_stack.slo import spec
from tests.support.paths import ROOT

COMPOSE = ROOT / "compose"
FILE = COMPOSE / "docker-compose.yaml"
DEFAULT = spec.load(ROOT / "slo" / "default.yaml", "slo/default.yaml")


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = yaml.safe_load(FILE.read_text())["services"]
    return found


@pytest.fixture(scope="module")
def docker_compose() -> str:
    """Debian's docker-compose (validates without an engine); `make test` installs it."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail(
            "docker-compose not found: run `make test` (it installs Debian's docker-compose)"
        )
    return found


@pytest.mark.parametrize(
    ("profile", "engine", "absent"),
    [("cpu", {"simulator", "gpu-exporter-fake"}, {"vllm", "dcgm-exporter", "gpu-exporter-dcgm"}),
     ("gpu", {"vllm", "dcgm-exporter", "gpu-exporter-dcgm"}, {"simulator", "gpu-exporter-fake"})],
)  # fmt: skip
def test_each_profile_validates_offline_and_runs_its_own_engine(
    docker_compose: str, profile: str, engine: set[str], absent: set[str]
) -> None:
    run = subprocess.run(
        [docker_compose, "--profile", profile, "config"],
        cwd=COMPOSE, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    resolved = yaml.safe_load(run.stdout)["services"]
    # docker-compose 1.29 lists every service; a profile starts those that name it.
    running = {name for name, s in resolved.items() if profile in s.get("profiles", [profile])}
    common = {"sidecar", "proxy", "prometheus", "alertmanager", "grafana", "otel-collector",
              "tempo", "secrets"}  # fmt: skip
    assert running == common | engine and not running & absent, running


def test_the_broken_file_is_refused(docker_compose: str, tmp_path: Path) -> None:
    """The check can fail: a service with an unknown key."""
    broken = yaml.safe_load(FILE.read_text())
    broken["services"]["proxy"]["portz"] = ["8080:8080"]
    (tmp_path / "docker-compose.yaml").write_text(yaml.safe_dump(broken))
    run = subprocess.run([docker_compose, "config", "-q"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode != 0 and "portz" in run.stderr


def test_every_mounted_path_and_build_file_exists() -> None:
    checked = 0
    for name, service in services().items():
        sources = [v.split(":")[0] for v in service.get("volumes", []) if v.startswith(".")]
        env_files = service.get("env_file", [])
        sources += [env_files] if isinstance(env_files, str) else env_files
        if "build" in service:
            build = service["build"]
            sources.append(str(Path(build["context"]) / build["dockerfile"]))
        for source in sources:
            assert (COMPOSE / source).exists(), (name, source)
            checked += 1
    assert checked >= 15


def test_every_image_is_pinned_by_tag() -> None:
    for name, service in services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "/" not in tag, (name, image)


def test_the_generated_configs_are_fresh_and_name_the_services() -> None:
    generated = configs.compose_files(DEFAULT)
    for name, text in generated.items():
        assert (COMPOSE / "generated" / name).read_text() == text, f"stale {name}: run make"
    scrape = yaml.safe_load(generated["prometheus.yml"])
    hosts = {t.split(":")[0] for job in scrape["scrape_configs"]
             for c in job["static_configs"] for t in c["targets"]}  # fmt: skip
    hosts |= {
        scrape["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0].split(":")[0]
    }
    aliases = set(services())
    for service in services().values():
        aliases |= set(((service.get("networks") or {}).get("default") or {}).get("aliases", []))
    assert hosts <= aliases, hosts - aliases
    (sidecar,) = [j for j in scrape["scrape_configs"] if j["job_name"] == DEFAULT.selector["job"]]
    assert sidecar["static_configs"][0]["targets"] == [configs.COMPOSE_TARGETS.sidecar]
    # Prometheus runs with exemplar storage and loads the rules where the file mounts them.
    prometheus = services()["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert any(v.endswith(":/etc/prometheus/rules:ro") for v in prometheus["volumes"])
    assert scrape["rule_files"] == [configs.COMPOSE_RULES]


def test_pages_go_to_pagerduty_and_tickets_to_slack_with_secrets_from_files(
    alertmanager: tuple[str, str], tmp_path: Path
) -> None:
    _, amtool = alertmanager
    text = configs.compose_files(DEFAULT)["alertmanager.yml"]
    routing = yaml.safe_load(text)
    receivers = {r["name"]: r for r in routing["receivers"]}
    assert receivers["page"]["pagerduty_configs"][0]["routing_key_file"].startswith(configs.SECRETS)
    assert receivers["ticket"]["slack_configs"][0]["api_url_file"].startswith(configs.SECRETS)
    assert "PAGERDUTY_ROUTING_KEY" not in text and "hooks.slack.com" not in text
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    check = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
