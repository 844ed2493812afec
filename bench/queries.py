"""Benchmark: the dashboards' queries over 30 days, with and without the recording rules.

Backfills `--days` of 1-minute samples for `--models` models (bench/history.py) into a
Prometheus TSDB with `promtool tsdb create-blocks-from openmetrics`, then the SLO file's
recording rules with `create-blocks-from rules`. The rule backfiller cannot read a rule
it writes in the same run, so the rules go in dependency order, one stage at a time,
each read from a Prometheus started on the blocks so far. Then it times every SLO
overview and serving panel that reads a recording rule, over the whole range at a 30m
step (what Grafana asks for on a 30-day dashboard), as generated and with each recorded
series replaced by the raw expression it stands for, and prints the ratios of
Prometheus' own execution times (the API's `stats`) and of the HTTP round trips, which
add encoding and gzipping the same-sized answer to both. After a first backfill it waits
for Prometheus to compact the blocks, as a live server would have.

The SLO file is slo/default.yaml cut to the SLOs the history has data for (availability
and TTFT). Target (issue 7): the 30-day p99 TTFT panel at least 20x faster than the raw
histogram_quantile; the exit status is 1 if it is not.

    .venv/bin/python -m bench.queries [--days 30] [--models 20] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from bench import history
from llm_slo_stack.dashboards import generator as dashboards
from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules import generator
from llm_slo_stack.slo import conventions, spec
from llm_slo_stack.slo.model import Spec
from tests.support import prometheus as prometheus_server

ROOT = Path(__file__).resolve().parent.parent
SLOS = ("availability", "ttft")
STEP = "30m"
RUNS = 3
VARIABLES = {"$model": ".*", "$instance": ".*", "$__rate_interval": "5m"}  # and $service
FLAGS = (
    "--storage.tsdb.retention.time=3650d",  # keep backfilled months
    "--query.timeout=10m",
    "--query.max-samples=1000000000",
)
# promtool rounds these down to its 2h x 3^n ranges. Without a maximum the rules
# backfiller writes a block per rule per 2h: tens of thousands, and Prometheus runs out
# of file descriptors. Its block is one range query at the rule interval, which the API
# caps at 11,000 points: 162h at 1m.
RAW_BLOCKS = "--max-block-duration=720h"
RULE_BLOCKS = "--max-block-duration=162h"
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
SELECTOR = re.compile(rf"(?P<name>{NAME.pattern})\{{(?P<matchers>[^}}]*)\}}")
MATCHER = re.compile(r'(\w+)\s*(?:=~|!=|!~|=)\s*"([^"]*)"')


def bench_spec() -> Spec:
    default = spec.loads((ROOT / "slo" / "default.yaml").read_text(), "slo/default.yaml")
    return dataclasses.replace(default, slos=tuple(s for s in default.slos if s.name in SLOS))


def recording_rules(groups: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(group name, rule) for every recording rule; alerts left out."""
    return [(g["name"], rule) for g in groups for rule in g["rules"] if "record" in rule]


def reads(expr: str, names: set[str]) -> set[str]:
    """Which of `names` an expression reads."""
    return set(NAME.findall(expr)) & names


def stages(groups: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The recording rules in dependency order: stage n reads only raw series and the
    rules of stages before it. Groups keep their names; alerts are dropped."""
    records = recording_rules(groups)
    names = {rule["record"] for _, rule in records}
    level = dict.fromkeys(names, 0)
    changed = True
    while changed:  # the names form a DAG; this settles in its depth
        changed = False
        for _, rule in records:
            want = 1 + max((level[n] for n in reads(rule["expr"], names)), default=0)
            if want > level[rule["record"]]:
                level[rule["record"]], changed = want, True
    out: list[list[dict[str, Any]]] = []
    for stage in range(1, max(level.values()) + 1):
        by_group: dict[str, list[dict[str, Any]]] = {}
        for group, rule in records:
            if level[rule["record"]] == stage:
                by_group.setdefault(group, []).append(rule)
        out.append([{"name": name, "rules": rules} for name, rules in by_group.items()])
    return out


def raw_forms(s: Spec) -> dict[tuple[str, str], str]:
    """What each recorded series a dashboard reads stands for, in raw series: keyed by
    the record name and its SLO (or quantile) label."""
    forms: dict[tuple[str, str], str] = {}
    for slo in s.slos:
        for window in conventions.windows(s):
            bad, total = conventions.sli_rates(s, slo, window)
            ratio = catalog.SLI_ERROR_RATIO.format(window=conventions.window(window))
            forms[ratio, slo.name] = f"(({bad}) / ({total}))"
        period = forms[
            catalog.SLI_ERROR_RATIO.format(window=conventions.window(s.period)), slo.name
        ]
        budget = conventions.number(slo.error_budget)
        forms[catalog.SLO_BUDGET_REMAINING, slo.name] = f"(1 - {period} / {budget})"
    rules = recording_rules(generator.rule_groups(s))
    recorded = {rule["record"]: rule["expr"] for _, rule in rules}
    for metric in catalog.PHASES.values():
        name = conventions.phase_bucket_rate(s, metric)
        buckets = recorded[name]
        forms[name, ""] = f"({buckets})"
        quantile = conventions.phase_quantile(s, metric)
        for q in catalog.PHASE_QUANTILES:
            forms[quantile, str(q)] = f"histogram_quantile({q}, {buckets})"
    return forms


def unrecorded(expr: str, forms: dict[tuple[str, str], str]) -> str:
    """`expr` with every recorded series replaced by its raw form; the model matcher
    must be the dashboard's All (`.*`), which the raw forms keep."""
    names = {name for name, _ in forms}

    def replace(match: re.Match[str]) -> str:
        if match["name"] not in names:
            return match[0]
        matchers = dict(MATCHER.findall(match["matchers"]))
        assert matchers.get(catalog.MODEL, ".*") == ".*", match[0]
        key = matchers.get(catalog.SLO) or matchers.get(catalog.QUANTILE) or ""
        return forms[match["name"], key]

    return SELECTOR.sub(replace, expr)


def filled(expr: str, s: Spec) -> str:
    for variable, value in {"$service": s.service, **VARIABLES}.items():
        expr = expr.replace(variable, value)
    return expr


def panels(s: Spec) -> list[tuple[str, str, list[str]]]:
    """(dashboard, panel title, its targets) for every panel that reads a recording rule."""
    out = []
    forms = raw_forms(s)
    slos = {slo.name for slo in s.slos}
    for board in (dashboards.slo_overview(s), dashboards.serving(s)):
        row = ""
        for panel in board["panels"]:
            if panel["type"] == "row":
                row = panel["title"].split(":")[0]
                continue
            exprs = [t["expr"] for t in panel["targets"] if not t["exemplar"]]  # client: raw
            targets = [filled(e, s) for e in exprs]
            if any(unrecorded(t, forms) != t for t in targets):
                title = f"{row}: {panel['title']}" if row in slos else panel["title"]
                out.append((board["title"].split(": ")[1], title[:48], targets))
    return out


def run(*command: str | Path) -> None:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if done.returncode:
        shown = " ".join(map(str, command))
        sys.exit(f"{shown} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def settled(url: str) -> None:
    """Wait until Prometheus has merged the backfilled blocks, as a live one would have:
    its TSDB loop first runs a minute after start, then compacts without pause."""

    def read(name: str) -> float:
        text = requests.get(f"{url}/metrics", timeout=10).text
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        if found is None:
            raise RuntimeError(f"prometheus does not export {name}")
        return float(found[1])

    time.sleep(max(0.0, read("process_start_time_seconds") + 75 - time.time()))
    before = read("process_cpu_seconds_total")
    while True:
        time.sleep(5)
        now = read("process_cpu_seconds_total")
        if now - before < 0.25:
            break
        before = now
    print(f"blocks after compaction: {read('prometheus_tsdb_blocks_loaded'):.0f}")


def backfill(work: Path, s: Spec, days: int, models: int, end: int) -> None:
    data = work / "data"
    started = time.monotonic()
    samples = history.write(work / "history.om", models, days, end, s.selector)
    size = (work / "history.om").stat().st_size
    took = time.monotonic() - started
    print(f"history: {samples:,} samples, {size / 1e9:.2f} GB of OpenMetrics, {took:.0f} s")
    started = time.monotonic()
    backfiller = ("promtool", "tsdb", "create-blocks-from")
    run(*backfiller, "openmetrics", RAW_BLOCKS, work / "history.om", data)
    (work / "history.om").unlink()
    print(f"raw blocks: {time.monotonic() - started:.0f} s")
    config = {"global": {"scrape_interval": "1m"}}
    start = end - days * history.DAY
    for index, groups in enumerate(stages(generator.rule_groups(s)), 1):
        started = time.monotonic()
        rules = work / f"stage{index}.rules.yaml"
        rules.write_text(yaml.safe_dump({"groups": groups}, width=1_000_000))
        out = work / f"stage{index}"
        with prometheus_server.running(work, config, data, *FLAGS) as url:
            window = (f"--start={start}", f"--end={end}", "--eval-interval=60s")
            run(*backfiller, "rules", f"--url={url}", *window, RULE_BLOCKS, f"--output-dir={out}",
                "--quiet", rules)  # fmt: skip
        for block in out.iterdir():
            shutil.move(block, data / block.name)
        count = sum(len(g["rules"]) for g in groups)
        print(f"rules stage {index}: {count} rules, {time.monotonic() - started:.0f} s")


Points = dict[tuple[str, float], float]


@dataclasses.dataclass(frozen=True)
class Timing:
    """Medians over RUNS queries: Prometheus' own execution time (its `stats`), and the
    HTTP round trip, which adds encoding and gzipping the answer: what Grafana waits for."""

    server: float
    http: float
    points: Points


def timed(url: str, expr: str, start: int, end: int) -> Timing:
    """RUNS range queries after one warm-up; the answer's points by model and time."""
    params: dict[str, str | float] = {
        "query": expr,
        "start": start,
        "end": end,
        "step": STEP,
        "stats": "all",
    }
    server, http = [], []
    for _ in range(RUNS + 1):
        began = time.perf_counter()
        reply = requests.get(f"{url}/api/v1/query_range", params=params, timeout=900)
        http.append(time.perf_counter() - began)
        answer = reply.json()
        if answer["status"] != "success":
            sys.exit(f"query failed: {answer}\n{expr}")
        server.append(answer["data"]["stats"]["timings"]["execTotalTime"])
    points = {
        (_identity(series["metric"]), t): float(v)
        for series in answer["data"]["result"]
        for t, v in series["values"]
    }
    return Timing(statistics.median(server[1:]), statistics.median(http[1:]), points)


def _identity(labels: dict[str, str]) -> str:
    """What tells a panel's series apart in both forms: the raw form lacks the rules' labels."""
    return f"{labels.get(catalog.MODEL, '')}/{labels.get(catalog.LE, '')}"


def difference(recorded: Points, raw: Points) -> float:
    """The median relative difference between the two answers where both have a number.
    Not 0 even where a rule records exactly the raw expression: the backfiller evaluates a
    group at an offset of up to a minute from the query's steps (as Prometheus does), and
    the 1d, 3d and period rules average 5m rates where the raw form takes one rate."""
    diffs = []
    for key, want in raw.items():
        got = recorded.get(key, math.nan)
        if math.isfinite(got) and math.isfinite(want):
            diffs.append(abs(got - want) / max(abs(got), abs(want), 1e-12))
    return statistics.median(diffs) if diffs else math.nan


def measure(url: str, s: Spec, days: int, end: int) -> float:
    """Print each panel's time as generated and raw; return the p99 TTFT panel's ratio of
    Prometheus' execution times."""
    start = end - days * history.DAY
    forms = raw_forms(s)
    print(f"\nqueries over {days}d at step {STEP}, median of {RUNS} after a warm-up; ms is")
    print("Prometheus' execution time, HTTP the round trip with the answer encoded and gzipped")
    print("| dashboard | panel | targets | rules ms | raw ms | raw/rules | HTTP raw/rules | points "
          "| median diff |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for board, title, targets in panels(s):
        recorded = [timed(url, t, start, end) for t in targets]
        raw = [timed(url, unrecorded(t, forms), start, end) for t in targets]
        points = sum(len(t.points) for t in recorded)
        if points == 0 and not any(t.points for t in raw):
            continue  # a phase the history has no data for
        fast, slow = sum(t.server for t in recorded), sum(t.server for t in raw)
        http = sum(t.http for t in raw) / sum(t.http for t in recorded)
        diff = max(difference(r.points, w.points) for r, w in zip(recorded, raw, strict=True))
        print(f"| {board} | {title} | {len(targets)} | {fast * 1000:,.1f} | {slow * 1000:,.1f} "
              f"| {slow / fast:,.1f}x | {http:,.1f}x | {points:,} | {diff:.1e} |")  # fmt: skip
    buckets = conventions.phase_bucket_rate(s, catalog.TIME_TO_FIRST_TOKEN)
    quantile = conventions.phase_quantile(s, catalog.TIME_TO_FIRST_TOKEN)
    variants = {
        "raw histogram_quantile": unrecorded(f'{quantile}{{quantile="0.99"}}', forms),
        "quantile of the recorded sum by (le, model)":
            f'histogram_quantile(0.99, {buckets}{{service="{s.service}"}})',
        "recorded quantile": f'{quantile}{{service="{s.service}", quantile="0.99"}}',
    }  # fmt: skip
    print(f"\np99 TTFT over {days}d per model (target: recorded quantile >= 20x faster than raw)")
    print("| query | ms | HTTP ms | points | raw / this | HTTP raw / this | median diff |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    times = {name: timed(url, expr, start, end) for name, expr in variants.items()}
    base = times["raw histogram_quantile"]
    for name, t in times.items():
        print(f"| {name} | {t.server * 1000:,.1f} | {t.http * 1000:,.1f} | {len(t.points):,} "
              f"| {base.server / t.server:,.1f}x | {base.http / t.http:,.1f}x "
              f"| {difference(t.points, base.points):.1e} |")  # fmt: skip
    return base.server / times["recorded quantile"].server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument(
        "--workdir", type=Path, help="keep the TSDB here, reuse it next time (default: a temp dir)"
    )
    args = parser.parse_args()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows through a pipe
    if shutil.which("promtool") is None:
        sys.exit("promtool not found: run `make promtool` (Debian's prometheus)")
    version = subprocess.run(["prometheus", "--version"], capture_output=True, text=True)
    print(f"machine: {os.cpu_count()} cores; {version.stdout.splitlines()[0]}")
    s = bench_spec()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-queries-"))
    work.mkdir(parents=True, exist_ok=True)
    done = work / "backfilled-until"  # written last: a cut-short backfill is redone
    try:
        if done.exists():
            end = int(done.read_text())
            print(f"reusing the TSDB in {work}")
        else:
            shutil.rmtree(work / "data", ignore_errors=True)
            end = int(time.time()) // history.MINUTE * history.MINUTE
            backfill(work, s, args.days, args.models, end)
            done.write_text(str(end))
        blocks = sum(f.stat().st_size for f in (work / "data").rglob("*") if f.is_file())
        print(f"TSDB: {blocks / 1e9:.2f} GB")
        with prometheus_server.running(work, {"global": {}}, work / "data", *FLAGS) as url:
            settled(url)
            ratio = measure(url, s, args.days, end)
    finally:
        if args.workdir is None:
            shutil.rmtree(work)
    return 0 if ratio >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
