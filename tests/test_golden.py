"""Golden files: for each spec feature, the exact files the generator writes.

After a deliberate change to the generator, rewrite them with `make golden` and review
the diff like code.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from llm_slo_stack.dashboards import generator as dashboards
from llm_slo_stack.rules import writer
from llm_slo_stack.slo import spec
from tests.support.paths import GOLDEN, ROOT, golden_cases
from tests.support.promtool import run as run_promtool

UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def generated(case: str) -> dict[str, str]:
    """The spec's rules, tests and (under dashboards/) its dashboards."""
    path = GOLDEN / case / "spec.yaml"
    loaded = spec.loads(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    boards = {f"dashboards/{name}": text for name, text in dashboards.files(loaded).items()}
    return writer.files(loaded) | boards


def on_disk(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", golden_cases())
def test_generator_writes_the_golden_files(case: str) -> None:
    expected_dir = GOLDEN / case / "expected"
    files = generated(case)
    if UPDATE:
        for name, text in files.items():
            (expected_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / name).write_text(text, encoding="utf-8")
    expected = on_disk(expected_dir)
    assert sorted(files) == sorted(expected)
    for name, text in files.items():
        assert (
            text == expected[name]
        ), f"{case}/expected/{name} differs: run `make golden` and review"


@pytest.mark.parametrize("case", golden_cases())
def test_golden_rules_pass_promtool_check_and_their_own_tests(
    case: str, promtool: str, tmp_path: Path
) -> None:
    for name, text in generated(case).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    rules = sorted(tmp_path.glob("*.rules.yaml"))
    checked = run_promtool(promtool, "check", "rules", *rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = sorted((tmp_path / "tests").glob("*.yaml"))
    assert tests, "every SLO gets promtool tests"
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda t: run_promtool(promtool, "test", "rules", t), tests))
    for test, run in zip(tests, runs, strict=True):
        assert run.returncode == 0, f"{test.name}:\n{run.stdout}{run.stderr}"
