"""The `llm-slo` command: what it writes, what it refuses, and that it never half-writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_slo_stack.cli import command as cli
from llm_slo_stack.rules import writer
from tests.support import engines, loopback
from tests.support.paths import FIXTURES, ROOT
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
        "alertmanager.yaml",
        "chat.prometheusrule.yaml",
        "chat.rules.yaml",
        "tests/chat.availability.onset.test.yaml",
        "tests/chat.availability.soak.test.yaml",
        "tests/chat.availability.test.yaml",
        "tests/chat.ttft.onset.test.yaml",
        "tests/chat.ttft.soak.test.yaml",
        "tests/chat.ttft.test.yaml",
        "tests/chat.upstream-5xx.onset.test.yaml",
        "tests/chat.upstream-5xx.soak.test.yaml",
        "tests/chat.upstream-5xx.test.yaml",
    ]
    crd = (out / "chat.prometheusrule.yaml").read_text()
    assert "kind: PrometheusRule" in crd and "apiVersion: monitoring.coreos.com/v1" in crd
    first = tree(out)
    assert generate(spec_file, out) == 0
    assert tree(out) == first


def test_phase_and_gpu_files_only_while_the_spec_includes_them(
    spec_file: Path, tmp_path: Path
) -> None:
    """A plain SLO file yields only its SLOs; `include: [phases, gpu]` adds the phase
    rules, the serving dashboard, the GPU alerts, their tests and the GPU dashboard, and
    dropping it again removes them."""
    out, boards = tmp_path / "rules", tmp_path / "dashboards"
    assert generate(spec_file, out) == 0
    plain = {**tree(out), **tree(boards)}
    assert "histogram_quantile" not in (out / "chat.rules.yaml").read_text()
    spec_file.write_text(VALID.replace("slos:", "include: [phases, gpu]\nslos:"))
    assert generate(spec_file, out) == 0
    assert "histogram_quantile" in (out / "chat.rules.yaml").read_text()
    added = {*tree(out), *tree(boards)} - set(plain)
    assert added == {"gpu.rules.yaml", "tests/gpu.test.yaml", "chat-serving.json", "gpu.json"}
    spec_file.write_text(VALID)
    assert generate(spec_file, out) == 0
    assert {**tree(out), **tree(boards)} == plain


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


def check_server(capsys: pytest.CaptureFixture[str], where: str) -> tuple[int, str, str]:
    code = cli.main(["check", "--metrics", where])
    out, err = capsys.readouterr()
    return code, out, err


def saved(tmp_path: Path, text: str) -> str:
    path = tmp_path / "metrics.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_says_which_thresholds_a_stock_vllm_cannot_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """vLLM 0.10.2's default TTFT buckets jump from 1 s to 2.5 s: the default spec's 2 s
    TTFT SLO has no bound; its 200 ms ITL and 60 s e2e thresholds are bounds."""
    code, out, err = check_server(capsys, saved(tmp_path, engines.vllm_both_generations().text))
    assert code == 1
    assert "ttft under 2s: not a bound of the server's histogram (nearest: 1s and 2.5s)" in err
    assert "--custom-histogram-buckets" in err and "llm-trace-proxy" in err
    assert "itl under 0.2s: a bound of the server's histogram: ok" in out
    assert "e2e under 60s: a bound of the server's histogram: ok" in out


def test_check_over_http_passes_a_server_whose_bounds_carry_every_threshold(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with loopback.http(loopback.payload(engines.sglang_two_schedulers().text)) as (url, _):
        code, out, err = check_server(capsys, url)
    assert code == 0 and err == ""
    assert f"{url}: sglang" in out and out.count(": ok") == 3 + 1  # the file, three SLOs


def test_check_names_a_missing_histogram_and_a_mean_only_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check_server(capsys, saved(tmp_path, (FIXTURES / "tgi.metrics").read_text()))
    assert code == 1 and "ttft under 2s: tgi writes no ttft histogram" in err
    assert "--custom-histogram-buckets" not in err  # not a vLLM flag to give TGI
    code, out, err = check_server(
        capsys, saved(tmp_path, (FIXTURES / "triton_core.metrics").read_text())
    )
    assert code == 1 and "e2e under 60s: triton gives only a mean for e2e" in err
    assert "ttft under 2s: a bound of the server's histogram: ok" in out  # 2000 ms


def test_check_of_a_payload_that_is_not_metrics_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = check_server(capsys, saved(tmp_path, "<html>oops</html>\n"))
    assert code == 1 and err.count("\n") == 1 and "bad_payload" in err
    code, _, err = check_server(capsys, str(tmp_path / "absent.txt"))
    assert code == 1 and "cannot read" in err and "Traceback" not in err


def test_rules_prometheus_would_refuse_are_never_written(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], promtool: str
) -> None:
    """A template function Prometheus lacks passes every check a Python parse can make
    soundly; promtool, run before writing, refuses it and the good files stay."""
    out = tmp_path / "rules"
    assert generate(spec_file, out) == 0
    before = tree(out)
    spec_file.write_text(
        spec_file.read_text().replace(
            "ticket: false,", "ticket: false, annotations: {summary: '{{ nosuchfunc }}'},"
        )
    )
    assert cli.main(["check", str(spec_file)]) == 1  # check runs what generate runs
    assert generate(spec_file, out) == 1
    err = capsys.readouterr().err
    assert 'function "nosuchfunc" not defined' in err and str(spec_file) in err
    assert tree(out) == before


def test_unchanged_files_are_left_untouched(spec_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "rules"
    assert generate(spec_file, out) == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    time.sleep(0.05)
    assert generate(spec_file, out) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps
