"""GPU alerts that know about LLM serving, and the promtool tests that prove them.

They read the catalog's GPU and serving metrics, so they work with either GPU source
(NVML or dcgm-exporter). GPU and serving series are joined on `namespace` and `pod`
where Kubernetes labels are present (dcgm-exporter --kubernetes, pod relabelling for
the sidecar); without them the join is node-wide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_slo_stack.exporters import catalog
from llm_slo_stack.rules.generator import Group
from llm_slo_stack.slo.conventions import (
    BOARD_GPU,
    POD_JOIN,
    RUNBOOK_GPU,
    dashboard_uid,
    dashboard_url,
    pod_panel,
)
from llm_slo_stack.slo.selector import Matcher, Selector

GROUP = "llm-slo:gpu"
NOT_THROTTLING = ("gpu_idle", "applications_clocks_setting", "display_clock_setting")
MEMORY_FULL = 0.95
IDLE = 0.05
BUSY = 0.95
LEAK_MIN_GROWTH = 256 * 2**20  # bytes in an hour; less is noise, not a leak


@dataclass(frozen=True)
class Links:
    """Where GPU alerts link: the runbooks, and Grafana with the GPU dashboard."""

    runbooks: str
    dashboards: str


@dataclass(frozen=True)
class GpuAlert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str
    anchor: str
    panel: str  # the key of the GPU dashboard's panel that shows the cause

    def rule(self, links: Links) -> dict[str, Any]:
        rule: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.duration != "0m":
            rule["for"] = self.duration
        rule["labels"] = {catalog.SEVERITY: self.severity}
        rule["annotations"] = self.annotations(links)
        return rule

    def annotations(self, links: Links) -> dict[str, str]:
        return {
            "description": self.description,
            "runbook_url": f"{links.runbooks}{RUNBOOK_GPU}#{self.anchor}",
            "dashboard_url": dashboard_url(
                links.dashboards, dashboard_uid(None, BOARD_GPU), {}, self.panel
            ),
            "summary": self.summary,
        }


m = catalog
MEMORY_USED, MEMORY_TOTAL = m.GPU_MEMORY_USED.name, m.GPU_MEMORY_TOTAL.name
PROCESS_MEMORY = m.GPU_PROCESS_MEMORY.name
ALERTS = (
    GpuAlert(
        m.ALERT_GPU_MEMORY_FULL,
        f"{MEMORY_USED} / {MEMORY_TOTAL} > {MEMORY_FULL}",
        "5m",
        "ticket",
        "GPU memory above 95 % for 5 minutes",
        "vLLM preallocates --gpu-memory-utilization (0.9 by default) of the GPU; above 95 % "
        "another process holds memory, or the setting is too high: expect OOMs and preemptions.",
        "memory-nearly-full",
        m.GPU_MEMORY_USED.name,
    ),
    GpuAlert(
        m.ALERT_GPU_THROTTLED,
        f'{m.GPU_CLOCKS_EVENT.name}{{{m.REASON}!~"{"|".join(NOT_THROTTLING)}"}} == 1',
        "10m",
        "ticket",
        "GPU clocks held down (power or thermal) for 10 minutes",
        "A throttled GPU decodes slower: inter-token latency rises with no change in load. "
        "The reason label says why (power cap, thermal, hardware slowdown).",
        "throttled",
        m.GPU_CLOCKS_EVENT.name,
    ),
    # On the per-GPU total, written at 0 from the exporter's first scrape: a code's own
    # series is born at 1 with its first event, where increase() sees nothing.
    GpuAlert(
        m.ALERT_GPU_XID,
        f"increase({m.GPU_XID_EVENTS.name}[10m]) > 0",
        "0m",
        "page",
        "critical XID error on a GPU",
        f"The driver reported a critical XID ({m.GPU_XID_ERRORS.name} has the code: 79 fell off "
        "the bus, 48 double-bit ECC, 94/95 contained/uncontained ECC). The engine on it is "
        "likely failing.",
        "xid-error",
        m.GPU_XID_ERRORS.name,
    ),
    GpuAlert(
        m.ALERT_GPU_DOWN,
        f"{m.GPU_UP.name} == 0",
        "2m",
        "page",
        "a GPU is lost or no longer reported",
        "NVML says the GPU is lost (it fell off the bus) or dcgm-exporter stopped reporting it "
        "for 2 minutes: the engine on it is down or failing.",
        "gpu-down",
        m.GPU_UP.name,
    ),
    # An exporter that restarts while a GPU is gone never saw it: no `llm_gpu_up 0` to
    # alert on, only fewer GPUs than the day before.
    GpuAlert(
        m.ALERT_GPU_MISSING,
        f"count by ({m.INSTANCE}) ({m.GPU_UP.name})\n"
        f"< max_over_time(count by ({m.INSTANCE}) ({m.GPU_UP.name})[1d:5m])\n",
        "10m",
        "page",
        "fewer GPUs reported than in the last day",
        "An exporter reports fewer GPUs than it did in the last 24 hours: a GPU fell off the "
        "bus or failed to come back after a restart, and the engine on it is gone.",
        "gpu-missing",
        m.GPU_UP.name,
    ),
    GpuAlert(
        m.ALERT_GPU_MEMORY_LEAK,
        f"min_over_time(deriv({PROCESS_MEMORY}[10m])[1h:5m]) > 0\n"
        # `offset 1h` exists only for a process seen an hour ago: a full hour of growth.
        f"and\n{PROCESS_MEMORY} - {PROCESS_MEMORY} offset 1h > {LEAK_MIN_GROWTH}\n",
        "0m",
        "ticket",
        "a process's GPU memory has grown steadily for an hour",
        "Every 10-minute window of the last hour grew, by more than 256 MiB in all: a leak "
        "(an unbounded cache, a growing LoRA set) that ends in an OOM.",
        "process-memory-leak",
        m.GPU_PROCESS_MEMORY.name,
    ),
    GpuAlert(
        m.ALERT_GPU_IDLE_WAITING,
        f"max by ({POD_JOIN}) ({m.GPU_UTILIZATION.name}) < {IDLE}\n"
        f"and on ({POD_JOIN})\nsum by ({POD_JOIN}) ({m.REQUESTS_WAITING.name}) > 0\n",
        "10m",
        "page",
        "GPUs idle while requests wait",
        "Requests are queued but no kernel runs: the serving side is stuck (a hung engine, a "
        "deadlocked scheduler, a lost GPU), not overloaded.",
        "idle-while-requests-wait",
        pod_panel(m.GPU_UTILIZATION),
    ),
    GpuAlert(
        m.ALERT_GPU_SATURATED,
        f"min by ({POD_JOIN}) ({m.GPU_UTILIZATION.name}) > {BUSY}\n"
        f"and on ({POD_JOIN})\nsum by ({POD_JOIN}) (deriv({m.REQUESTS_WAITING.name}[10m])) > 0\n",
        "15m",
        "ticket",
        "GPUs saturated while the queue grows",
        "Every GPU is busy and the waiting queue keeps growing: out of capacity. Add replicas "
        "or shed load before TTFT SLOs burn.",
        "saturated-queue-growing",
        pod_panel(m.GPU_UTILIZATION),
    ),
)


def rule_groups(links: Links) -> list[Group]:
    return [{"name": GROUP, "rules": [alert.rule(links) for alert in ALERTS]}]


def _series(metric: catalog.Metric, index: str | None = None, **labels: str) -> str:
    """A test input series of `metric` on GPU `index` (if given) with more labels."""
    every = {**(_labels(index) if index is not None else {}), **labels}
    return Selector(metric.name, tuple(Matcher(k, "=", v) for k, v in every.items())).render()


def _labels(index: str) -> dict[str, str]:
    return {m.GPU: index, m.UUID: f"GPU-{index}", m.GPU_NAME: "H100"}


def expect(alert: GpuAlert, at: str, firing: list[dict[str, str]], links: Links) -> dict[str, Any]:
    expected = [
        {
            "exp_labels": {**labels, catalog.SEVERITY: alert.severity},
            "exp_annotations": alert.annotations(links),
        }
        for labels in firing
    ]
    return {"alertname": alert.name, "eval_time": at, "exp_alerts": expected}


def _pod_case(
    name: str,
    alert: GpuAlert,
    utilization: str,
    waiting: tuple[str, str],
    at: tuple[str, str],
    links: Links,
) -> dict[str, Any]:
    """A join test: pods a and b (GPUs 0 and 1) at the same utilisation with different
    queues; nothing fires at `at[0]`, only pod a at `at[1]`."""
    pods = ("a", "b")
    series = []
    for gpu, (pod, queue) in enumerate(zip(pods, waiting, strict=True)):
        where = {m.NAMESPACE: "llm", m.POD: pod}
        series += [
            {"series": _series(m.GPU_UTILIZATION, str(gpu), **where), "values": utilization},
            {"series": _series(m.REQUESTS_WAITING, **{m.MODEL: "m"}, **where), "values": queue},
        ]
    return {
        "name": name,
        "input_series": series,
        "alert_rule_test": [
            expect(alert, at[0], [], links),
            expect(alert, at[1], [{m.NAMESPACE: "llm", m.POD: pods[0]}], links),
        ],
    }


def unit_tests(rule_file: str, links: Links) -> dict[str, Any]:
    """One promtool test per alert: a case that fires, with its exact labels and
    annotations, next to a near miss that must not."""
    a = {alert.name: alert for alert in ALERTS}
    gib = 2**30
    tests = [
        {  # GPU 0 at 96 % of its memory, GPU 1 at 90 % (what vLLM preallocates).
            "name": "memory above 95 % fires after 5m; 90 % never does",
            "input_series": [
                {"series": _series(m.GPU_MEMORY_USED, "0"), "values": f"{96 * gib}x20"},
                {"series": _series(m.GPU_MEMORY_TOTAL, "0"), "values": f"{100 * gib}x20"},
                {"series": _series(m.GPU_MEMORY_USED, "1"), "values": f"{90 * gib}x20"},
                {"series": _series(m.GPU_MEMORY_TOTAL, "1"), "values": f"{100 * gib}x20"},
            ],
            "alert_rule_test": [
                expect(a[m.ALERT_GPU_MEMORY_FULL], "4m", [], links),
                expect(a[m.ALERT_GPU_MEMORY_FULL], "6m", [_labels("0")], links),
            ],
        },
        {
            "name": "hardware thermal slowdown for 10m fires; an idle GPU's clocks never do",
            "input_series": [
                {
                    "series": _series(m.GPU_CLOCKS_EVENT, "0", reason="hw_thermal_slowdown"),
                    "values": "1x20",
                },
                {
                    "series": _series(m.GPU_CLOCKS_EVENT, "1", reason="gpu_idle"),
                    "values": "1x20",
                },
            ],
            "alert_rule_test": [
                expect(a[m.ALERT_GPU_THROTTLED], "9m", [], links),
                expect(
                    a[m.ALERT_GPU_THROTTLED],
                    "11m",
                    [{**_labels("0"), m.REASON: "hw_thermal_slowdown"}],
                    links,
                ),
            ],
        },
        {
            "name": "an XID at minute 5 pages at once and clears after its 10m window",
            "input_series": [
                {"series": _series(m.GPU_XID_EVENTS, "0"), "values": "0x5 1x20"},
                {"series": _series(m.GPU_XID_EVENTS, "1"), "values": "0x25"},
            ],
            "alert_rule_test": [
                expect(a[m.ALERT_GPU_XID], "4m", [], links),
                expect(a[m.ALERT_GPU_XID], "6m", [_labels("0")], links),
                expect(a[m.ALERT_GPU_XID], "17m", [], links),
            ],
        },
        {
            "name": "a GPU down from minute 5 pages after 2m; a GPU that stays up never does",
            "input_series": [
                {"series": _series(m.GPU_UP, "0"), "values": "1x4 0x10"},
                {"series": _series(m.GPU_UP, "1"), "values": "1x14"},
            ],
            "alert_rule_test": [
                expect(a[m.ALERT_GPU_DOWN], "6m", [], links),
                expect(a[m.ALERT_GPU_DOWN], "8m", [_labels("0")], links),
            ],
        },
        {  # Host a: GPU 1's series stops at minute 20 (its exporter restarted without it).
            "name": "a GPU gone from an exporter pages after 10m; a steady host never does",
            "input_series": [
                {"series": _series(m.GPU_UP, "0", instance="a"), "values": "1x60"},
                {"series": _series(m.GPU_UP, "1", instance="a"), "values": "1x20"},
                {"series": _series(m.GPU_UP, "0", instance="b"), "values": "1x60"},
            ],
            "alert_rule_test": [
                # The series is stale 5m after its last sample, then 10m pending.
                expect(a[m.ALERT_GPU_MISSING], "30m", [], links),
                expect(a[m.ALERT_GPU_MISSING], "40m", [{m.INSTANCE: "a"}], links),
            ],
        },
        {  # pid 1 grows 64 MiB a minute for 90 minutes; pid 2 grows then frees (a cache).
            "name": "steady growth for an hour fires; a sawtooth and a flat process never do",
            "input_series": [
                {
                    "series": _series(m.GPU_PROCESS_MEMORY, "0", pid="1"),
                    "values": f"{gib}+{64 * 2**20}x90",
                },
                {
                    "series": _series(m.GPU_PROCESS_MEMORY, "0", pid="2"),
                    "values": " ".join(
                        [
                            f"{gib}+{64 * 2**20}x29",
                            f"{gib}+{64 * 2**20}x29",
                            f"{gib}+{64 * 2**20}x30",
                        ]
                    ),
                },
                {
                    "series": _series(m.GPU_PROCESS_MEMORY, "0", pid="3"),
                    "values": f"{8 * gib}x90",
                },
            ],
            "alert_rule_test": [
                expect(a[m.ALERT_GPU_MEMORY_LEAK], "40m", [], links),
                expect(
                    a[m.ALERT_GPU_MEMORY_LEAK],
                    "85m",
                    [{**_labels("0"), m.PID: "1"}],
                    links,
                ),
            ],
        },
        # Pod a: idle GPU, 5 waiting. Pod b: idle GPU, nothing waiting (just quiet).
        _pod_case(
            "an idle GPU with requests waiting in its pod pages after 10m; a quiet pod never does",
            a[m.ALERT_GPU_IDLE_WAITING],
            "0.01x30",
            ("5x30", "0x30"),
            ("9m", "12m"),
            links,
        ),
        # Pod a: saturated, queue +1 a minute. Pod b: saturated, queue steady at 10.
        _pod_case(
            "a saturated GPU with a growing queue opens a ticket after 15m; "
            "a steady queue never does",
            a[m.ALERT_GPU_SATURATED],
            "0.99x40",
            ("0+1x40", "10x40"),
            ("10m", "20m"),
            links,
        ),
    ]
    return {
        "rule_files": [rule_file],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **test} for test in tests],
    }
