"""Benchmark: what the sidecar adds to a scrape of a big vLLM /metrics.

For upstream payloads of 5,000 and 50,000 series (vLLM's own format, many models and
engines), it times scrapes straight from the upstream and through `llm-serving-exporter`
(a real process, over loopback HTTP), and prints p50/p99 of both, the latency the
sidecar adds, its CPU seconds per scrape and peak RSS, and as a yardstick the time
prometheus_client's text parser takes on the same payload.

Targets (issue 12): the sidecar adds at most 10 ms at p99 for 5,000 series and 100 ms
for 50,000; RSS under 100 MB.

    .venv/bin/python -m bench.exporter [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.payload import vllm_payload
from llm_slo_stack.exporters.sidecar import SidecarCollector
from tests.support import loopback

SIZES = {5_000: 300, 50_000: 40}  # series -> scrapes of each kind
TARGETS_MS = {5_000: 10, 50_000: 100}
RSS_TARGET_MB = 100
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def best_of(runs: int, work: object) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return min(times)


def start_exporter(upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    port = loopback.free_port()
    exe = Path(sys.executable).parent / "llm-serving-exporter"
    command: list[str | Path] = [
        exe,
        "--target",
        upstream,
        "--listen",
        f"127.0.0.1:{port}",
        "--max-models",
        "100000",
        "--timeout",
        "10",
    ]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    loopback.wait_until_up(url, process)
    return process, url


def measure(series: int, scrapes: int) -> dict[str, float]:
    text = vllm_payload(series)
    lines = sum(1 for line in text.split("\n") if line and line[0] != "#")
    result: dict[str, float] = {"series": lines, "bytes": len(text)}
    result["parser_ms"] = 1e3 * best_of(3, lambda: list(text_string_to_metric_families(text)))
    collector = SidecarCollector("http://unused", max_models=100_000)
    result["ours_ms"] = 1e3 * best_of(3, lambda: collector.text(collector.read(text)))
    session = requests.Session()
    with loopback.http(loopback.payload(text)) as (upstream, _):
        process, sidecar = start_exporter(upstream)
        try:
            for _ in range(3):  # warm up both paths
                session.get(upstream, timeout=30)
                session.get(sidecar, timeout=30)
            direct, through = [], []
            cpu_before = cpu_seconds(process.pid)
            for _ in range(scrapes):
                start = time.perf_counter()
                session.get(upstream, timeout=30).content  # noqa: B018
                direct.append(time.perf_counter() - start)
                start = time.perf_counter()
                answer = session.get(sidecar, timeout=30)
                through.append(time.perf_counter() - start)
                assert b"llm_exporter_upstream_up 1.0" in answer.content
            result["cpu_per_scrape_ms"] = 1e3 * (cpu_seconds(process.pid) - cpu_before) / scrapes
            result["rss_mb"] = peak_rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=10)
    for name, values in (("direct", direct), ("sidecar", through)):
        result[f"{name}_p50_ms"] = 1e3 * statistics.median(values)
        result[f"{name}_p99_ms"] = 1e3 * percentile(values, 0.99)
    result["added_p50_ms"] = result["sidecar_p50_ms"] - result["direct_p50_ms"]
    result["added_p99_ms"] = result["sidecar_p99_ms"] - result["direct_p99_ms"]
    result["ratio_p50"] = result["sidecar_p50_ms"] / result["direct_p50_ms"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the scrapes")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    header = (
        f"{'series':>8} {'MB':>5} {'direct p50/p99':>15} {'sidecar p50/p99':>16} "
        f"{'added p50/p99':>14} {'ratio':>6} {'cpu/scrape':>10} {'rss MB':>7} {'ours':>7} "
        f"{'prom_client':>11} {'target':>7}"
    )
    print(header)
    ok = True
    for series, scrapes in SIZES.items():
        r = measure(series, max(10, scrapes // 10) if args.quick else scrapes)
        met = r["added_p99_ms"] <= TARGETS_MS[series] and r["rss_mb"] < RSS_TARGET_MB
        ok &= met
        print(
            f"{int(r['series']):>8} {r['bytes'] / 1e6:>5.1f} "
            f"{r['direct_p50_ms']:>7.1f}/{r['direct_p99_ms']:<7.1f} "
            f"{r['sidecar_p50_ms']:>8.1f}/{r['sidecar_p99_ms']:<7.1f} "
            f"{r['added_p50_ms']:>6.1f}/{r['added_p99_ms']:<7.1f} "
            f"{r['ratio_p50']:>6.1f} {r['cpu_per_scrape_ms']:>8.1f}ms {r['rss_mb']:>7.1f} "
            f"{r['ours_ms']:>5.1f}ms {r['parser_ms']:>9.1f}ms "
            f"{'met' if met else 'MISSED':>7}"
        )
    print(
        "times in ms; 'ours' = the sidecar's read and mapping in-process, 'prom_client' = "
        "prometheus_client's text parser alone on the same payload (best of 3)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
