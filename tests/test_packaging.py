"""The wheel as a user gets it: built from the tracked files, installed into a clean venv
outside the repository with only the core dependencies (from the package index, as `pip
install llm-slo-stack` would), run from an empty folder."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.paths import ROOT

pytestmark = pytest.mark.packaging
FOLDER_NAMES = {"cli", "dashboards", "exporters", "rules", "simulator", "slo", "tracing"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the tracked files (a fresh clone's content)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work), str(source)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    (built,) = work.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clean venv with the wheel and its core dependencies, no extras; yields its bin/."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    install = [str(where / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    run = subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    yield where / "bin"


def test_the_wheel_holds_one_namespace_the_default_spec_and_the_runbooks(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"llm_slo_stack", "llm_slo_stack-0.1.0.dist-info"}
    assert "llm_slo_stack/__init__.py" not in names  # a namespace, shared with nothing else
    assert "llm_slo_stack/slo/default.yaml" in names
    runbooks = {n for n in names if n.startswith("llm_slo_stack/rules/runbooks/")}
    assert {Path(n).name for n in runbooks} == {
        p.name for p in (ROOT / "rules" / "runbooks").glob("*.md")
    }
    assert {f"llm_slo_stack/{f}/py.typed" for f in FOLDER_NAMES} <= set(names)


def test_only_the_namespace_lands_in_site_packages(venv: Path) -> None:
    (site,) = venv.parent.glob("lib/python*/site-packages")
    ours = {p.name for p in site.iterdir() if "llm" in p.name or p.name in FOLDER_NAMES}
    assert ours == {"llm_slo_stack", "llm_slo_stack-0.1.0.dist-info"}


def test_generate_on_the_packaged_default_spec(venv: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [str(venv / "llm-slo"), "generate"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    rules = tmp_path / "rules" / "generated" / "chat.rules.yaml"
    expected = (ROOT / "rules" / "generated" / "chat.rules.yaml").read_text()
    # The same rules as the repository's, but for the header naming the spec.
    assert yaml.safe_load(rules.read_text()) == yaml.safe_load(expected)
    assert "from llm_slo_stack/slo/default.yaml" in rules.read_text().splitlines()[0]
    assert (tmp_path / "dashboards" / "generated" / "chat-serving.json").is_file()


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (["llm-sim", "--help"], "sim"),
        (["llm-trace-proxy", "--help"], "tracing"),
        (["llm-gpu-exporter", "--source", "nvml"], "gpu"),
    ],
)
def test_a_missing_extra_is_one_line_that_says_what_to_install(
    venv: Path, command: list[str], extra: str
) -> None:
    run = subprocess.run(
        [str(venv / command[0]), *command[1:]], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert f"pip install 'llm-slo-stack[{extra}]'" in run.stderr


@pytest.mark.parametrize(
    "command",
    ["llm-gpu-exporter", "llm-serving-exporter", "llm-vllm-exporter", "llm-slo"],
)
def test_commands_without_extras_document_themselves(venv: Path, command: str) -> None:
    run = subprocess.run([str(venv / command), "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith(f"usage: {command}")
