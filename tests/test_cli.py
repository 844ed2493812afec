"""The `llm-slo` command: what it writes, what it refuses, and that it never half-writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llm_slo_stack.cli import command as cli
from llm_slo_stack.rules import writer
from tests.support.paths import ROOT
from tests.support.specs import VALID, generate_refused


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "chat.yaml"
    path.write_text(VALID, encoding="utf-8")
    return path


def generate(spec_file: Path, out: Path) -> int:
    """`llm-slo generate` into `out`, its dashboards beside it: never into the checkout."""
    return cli.main(
        [
            "generate",
            str(spec_file),
            "--rules-dir",
            str(out),
            "--dashboards-dir",
            str(out.parent / "dashboards"),
        ]
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_generate_writes_rules_crd_and_tests_per_slo(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "rules"
    assert generate(spec_file, out) == 0
    assert sorted(tree(out)) == [
        "chat.prometheusrule.yaml",
        "chat.rules.yaml",
        "gpu.rules.yaml",
        "tests/chat.availability.soak.test.yaml",
        "tests/chat.availability.test.yaml",
        "tests/chat.ttft.soak.test.yaml",
        "tests/chat.ttft.test.yaml",
        "tests/chat.upstream-5xx.soak.test.yaml",
        "tests/chat.upstream-5xx.test.yaml",
        "tests/gpu.test.yaml",
    ]
    crd = (out / "chat.prometheusrule.yaml").read_text()
    assert "kind: PrometheusRule" in crd and "apiVersion: monitoring.coreos.com/v1" in crd
    first = tree(out)
    assert generate(spec_file, out) == 0
    assert tree(out) == first


def test_check_validates_without_writing(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check", str(spec_file)]) == 0
    assert "ok (3 SLOs for service chat)" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.yaml"]


def test_two_files_for_one_service_are_refused(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = tmp_path / "twin.yaml"
    twin.write_text(VALID, encoding="utf-8")
    err = generate_refused(capsys, tmp_path / "rules", spec_file, twin)
    assert "found 'chat', also in" in err


def test_one_bad_file_stops_every_file(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("service: chat", "service: other").replace("99.9", "120"))
    err = generate_refused(capsys, tmp_path / "rules", spec_file, bad)
    assert "bad.yaml:8: slos[0].objective" in err


def test_files_no_longer_generated_are_removed_but_not_the_users(
    spec_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rules"
    assert generate(spec_file, out) == 0
    gone = out / "tests" / "chat.old-slo.test.yaml"
    gone.write_text(writer.HEADER.format(source="x") + "tests: []\n")
    mine = out / "tests" / "chat.handwritten.yaml"
    mine.write_text("# my own test\n")
    assert generate(spec_file, out) == 0
    assert not gone.exists()
    assert mine.exists()


def test_dashboards_no_longer_generated_are_removed_but_not_the_users(
    spec_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rules"
    boards = tmp_path / "dashboards"
    assert generate(spec_file, out) == 0
    overview = json.loads((boards / "chat-slo-overview.json").read_text())
    gone = boards / "chat-old-board.json"  # what an earlier version generated
    gone.write_text(json.dumps(overview))
    mine = boards / "chat-mine.json"
    mine.write_text(json.dumps({**overview, "description": "my own board"}))
    other = boards / "talk-slo-overview.json"  # another spec's: not this run's to judge
    other.write_text(json.dumps(overview))
    assert generate(spec_file, out) == 0
    assert not gone.exists()
    assert mine.exists() and other.exists()
    assert (boards / "chat-slo-overview.json").is_file()


def test_a_failed_write_leaves_every_file_as_it_was(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rules"
    assert generate(spec_file, out) == 0
    before = tree(out)
    spec_file.write_text(VALID.replace("99.9", "99.95"), encoding="utf-8")
    (out / "tests" / "chat.ttft.test.yaml").unlink()
    (out / "tests" / "chat.ttft.test.yaml").mkdir()  # a target that cannot be replaced
    assert generate(spec_file, out) == cli.EXIT_WRITE
    assert "cannot write" in capsys.readouterr().err
    after = tree(out)
    del before["tests/chat.ttft.test.yaml"]
    assert after == before
    assert not [p for p in out.rglob(".*") if p.is_file()], "no temporary file is left behind"


def test_an_unwritable_folder_is_a_message(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert (
        cli.main(
            [
                "generate",
                str(spec_file),
                "--rules-dir",
                str(blocker / "rules"),
                "--dashboards-dir",
                str(blocker / "dashboards"),
            ]
        )
        == cli.EXIT_WRITE
    )
    assert "cannot write" in capsys.readouterr().err


def test_the_console_script_is_installed_and_documents_itself() -> None:
    run = subprocess.run(
        [Path(sys.executable).parent / "llm-slo", "generate", "--help"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0
    assert "--rules-dir" in run.stdout


def test_selectors_no_series_can_satisfy_are_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "chat.yaml"
    impossible = '\'http_requests_total{status="5xx", status="4xx"}\''
    path.write_text(VALID.replace("'http_requests_total{status=\"5xx\"}'", impossible))
    err = generate_refused(capsys, tmp_path / "rules", path)
    assert "cannot generate rules" in err and "no value of label 'status'" in err
