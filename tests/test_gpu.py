"""The GPU exporter without hardware: NVML through the in-memory fake of our Nvml interface,
the real pynvml on this GPU-less machine, dcgm-exporter payloads over loopback HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pynvml
import pytest

from llm_slo_stack.exporters import catalog
from llm_slo_stack.exporters import nvml as nvml_module
from llm_slo_stack.exporters.catalog import DCGM
from llm_slo_stack.exporters.gpu import DcgmCollector, NvmlCollector
from llm_slo_stack.exporters.nvml import (
    FakeNvml,
    GpuLost,
    NotSupported,
    NvmlError,
    PynvmlBinding,
)
from tests.support import loopback
from tests.support.gpus import H100, gpu, gpus
from tests.support.paths import FIXTURES, ROOT
from tests.support.scrape import samples as scrape_samples
from tests.support.scrape import scrape, value


def test_nvml_values_in_base_units_over_http() -> None:
    fake = FakeNvml(gpus())
    fake.xid_events = [(0, 79), (0, 79), (0, 48)]
    with loopback.exporter(NvmlCollector(fake, top_processes=2)) as url:
        series = scrape(url)
    g0, g1 = gpu(0, "GPU-0"), gpu(1, "GPU-1")
    assert value(series, catalog.GPU_EXPORTER_SOURCE_UP.name, source="nvml") == 1
    assert value(series, catalog.GPU_UP.name, **g0) == value(series, catalog.GPU_UP.name, **g1) == 1
    assert value(series, catalog.GPU_UTILIZATION.name, **g0) == 0.5  # 50 %
    assert value(series, catalog.GPU_MEMORY_USED.name, **g0) == 40 * 2**30
    assert value(series, catalog.GPU_MEMORY_TOTAL.name, **g0) == 80 * 2**30
    assert value(series, catalog.GPU_POWER.name, **g0) == 350.0  # 350,000 mW
    assert value(series, catalog.GPU_POWER_LIMIT.name, **g0) == 700.0
    assert value(series, catalog.GPU_ENERGY.name, **g0) == 9000.0  # 9,000,000 mJ
    assert value(series, catalog.GPU_TEMPERATURE.name, **g0) == 65
    assert value(series, catalog.GPU_SM_CLOCK.name, **g0) == 1.98e9  # 1980 MHz
    assert value(series, catalog.GPU_MEMORY_CLOCK.name, **g0) == 2.619e9
    # Clocks held down for power cap (0x4) and HW thermal slowdown (0x40), nothing else.
    active = {
        r
        for r in catalog.GPU_CLOCK_EVENT_REASONS.values()
        if value(series, catalog.GPU_CLOCKS_EVENT.name, **g0, reason=r)
    }
    assert active == {"sw_power_cap", "hw_thermal_slowdown"}
    assert value(series, catalog.GPU_ECC_ERRORS.name, **g0, kind="corrected") == 3
    assert value(series, catalog.GPU_ECC_ERRORS.name, **g0, kind="uncorrected") == 1
    assert value(series, catalog.GPU_REMAPPED_ROWS.name, **g0, kind="correctable") == 2
    assert value(series, catalog.GPU_PCIE_REPLAYS.name, **g0) == 7
    pids = {
        dict(labels)["pid"] for name, labels in series if name == catalog.GPU_PROCESS_MEMORY.name
    }
    assert pids == {"101", "102"}  # the top 2 of 3
    assert value(series, catalog.GPU_XID_ERRORS.name, **g0, xid="79") == 2
    assert value(series, catalog.GPU_XID_ERRORS.name, **g0, xid="48") == 1
    # GPU 1 does not support power readings: skipped, not an error.
    assert (catalog.GPU_POWER.name, frozenset(g1.items())) not in series
    assert value(series, catalog.GPU_EXPORTER_ERRORS.name, reason="nvml") == 0


def test_a_driver_without_xid_events_still_serves_every_reading() -> None:
    fake = FakeNvml(gpus(), xid_support=False)
    fake.xid_events = [(0, 79)]  # queued, but never delivered: nothing watches for them
    with loopback.exporter(NvmlCollector(fake)) as url:
        series = scrape(url)
    g0 = gpu(0, "GPU-0")
    assert value(series, catalog.GPU_EXPORTER_SOURCE_UP.name, source="nvml") == 1
    assert value(series, catalog.GPU_POWER.name, **g0) == 350.0
    assert not [name for name, _ in series if name == catalog.GPU_XID_ERRORS.name]
    assert value(series, catalog.GPU_EXPORTER_ERRORS.name, reason="nvml") == 0


def test_no_driver_is_source_up_0_and_recovers() -> None:
    fake = FakeNvml(gpus(), driver=False)
    with loopback.exporter(NvmlCollector(fake)) as url:
        before = scrape(url)
        fake.driver = True
        after = scrape(url)
    assert value(before, catalog.GPU_EXPORTER_SOURCE_UP.name, source="nvml") == 0
    assert value(before, catalog.GPU_EXPORTER_ERRORS.name, reason="no_driver") == 1
    assert not [name for name, _ in before if name == catalog.GPU_UP.name]
    assert value(after, catalog.GPU_EXPORTER_SOURCE_UP.name, source="nvml") == 1
    assert value(after, catalog.GPU_UP.name, **gpu(0, "GPU-0")) == 1


def test_a_gpu_that_falls_off_the_bus_is_up_0_and_comes_back() -> None:
    fake = FakeNvml(gpus())
    with loopback.exporter(NvmlCollector(fake)) as url:
        scrape(url)
        fake.gpus[1].lost = True
        lost = scrape(url)
        fake.gpus[1].lost = False
        back = scrape(url)
    g1 = gpu(1, "GPU-1")  # the lost GPU keeps its identity from the last good scrape
    assert value(lost, catalog.GPU_UP.name, **g1) == 0
    assert value(lost, catalog.GPU_UP.name, **gpu(0, "GPU-0")) == 1
    assert (catalog.GPU_MEMORY_USED.name, frozenset(g1.items())) not in lost  # nothing stale
    assert value(lost, catalog.GPU_EXPORTER_ERRORS.name, reason="gpu_lost") == 1
    assert value(back, catalog.GPU_UP.name, **g1) == 1
    assert fake.inits == 2  # NVML re-initialised after the loss


def test_real_pynvml_without_a_gpu_keeps_serving() -> None:
    try:
        pynvml.nvmlInit()
        pytest.skip("this machine has an NVIDIA driver: the no-driver path is tested with the fake")
    except pynvml.NVMLError:
        pass
    with loopback.exporter(NvmlCollector()) as url:
        first, second = scrape(url), scrape(url)
    assert value(first, catalog.GPU_EXPORTER_SOURCE_UP.name, source="nvml") == 0
    assert value(second, catalog.GPU_EXPORTER_ERRORS.name, reason="no_driver") == 2


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (pynvml.NVMLError_GpuIsLost, GpuLost),
        (pynvml.NVMLError_NotSupported, NotSupported),
        (pynvml.NVMLError_Unknown, NvmlError),
    ],
)
def test_the_real_binding_names_pynvml_errors_by_type(
    raised: type[pynvml.NVMLError], expected: type[NvmlError]
) -> None:
    binding = PynvmlBinding()
    binding._nvml = pynvml

    def call() -> int:
        raise raised()

    with pytest.raises(expected) as caught:
        binding._call(call)
    assert type(caught.value) is expected


def test_every_reading_names_a_function_and_constants_the_real_pynvml_has() -> None:
    assert set(nvml_module._SOURCES) == set(nvml_module.Reading)
    for function, constants, _ in nvml_module._SOURCES.values():
        assert callable(getattr(pynvml, function)), function
        for constant in constants:
            assert isinstance(getattr(pynvml, constant), int), constant


def dcgm_labels(gpu_index: str, uuid: str, name: str, **extra: str) -> dict[str, str]:
    labels = {"gpu": gpu_index, "uuid": uuid, "gpu_name": name}
    labels |= {
        k: "" for k in ("hostname", "pod", "namespace", "container", "mig_profile", "mig_instance")
    }
    return labels | extra


def test_dcgm_fields_map_onto_the_same_names_in_base_units() -> None:
    with (
        loopback.http(loopback.payload((FIXTURES / "dcgm.metrics").read_text())) as (upstream, _),
        loopback.exporter(DcgmCollector(upstream)) as url,
    ):
        series = scrape(url)
    pod = dcgm_labels(
        "0", "GPU-aaa", H100, hostname="node-1", pod="vllm-0", namespace="llm", container="vllm"
    )
    idle = dcgm_labels("1", "GPU-bbb", H100, hostname="node-1")  # `Hostname`, no Kubernetes labels
    assert value(series, catalog.GPU_EXPORTER_SOURCE_UP.name, source="dcgm") == 1
    assert value(series, catalog.GPU_UTILIZATION.name, **pod) == 0.87
    assert value(series, catalog.GPU_UTILIZATION.name, **idle) == 0
    assert value(series, catalog.GPU_MEMORY_USED.name, **pod) == 72000 * 2**20
    assert value(series, catalog.GPU_MEMORY_TOTAL.name, **pod) == (72000 + 8000 + 1559) * 2**20
    assert value(series, catalog.GPU_SM_CLOCK.name, **pod) == 1.755e9
    assert value(series, catalog.GPU_POWER.name, **pod) == 612.5
    assert value(series, catalog.GPU_ENERGY.name, **pod) == pytest.approx(123456.789)  # mJ to J
    assert value(series, catalog.GPU_SM_ACTIVE.name, **pod) == 0.62
    assert value(series, catalog.GPU_TENSOR_ACTIVE.name, **pod) == 0.31
    # 68 = 0x40 | 0x4: HW thermal slowdown and power cap.
    assert value(series, catalog.GPU_CLOCKS_EVENT.name, **pod, reason="hw_thermal_slowdown") == 1
    assert value(series, catalog.GPU_CLOCKS_EVENT.name, **pod, reason="sw_power_cap") == 1
    assert value(series, catalog.GPU_CLOCKS_EVENT.name, **pod, reason="gpu_idle") == 0
    assert (
        value(series, catalog.GPU_UP.name, **pod) == value(series, catalog.GPU_UP.name, **idle) == 1
    )


def test_dcgm_mig_lowercase_hostname_and_xid_changes() -> None:
    payload = (FIXTURES / "dcgm_mig.metrics").read_text()
    with (
        loopback.http(loopback.payload(payload)) as (upstream, behaviour),
        loopback.exporter(DcgmCollector(upstream)) as url,
    ):
        first = scrape(url)  # 79 shown at the first sight: counted before, or unwatched
        second = scrape(url)  # the same last XID: not a new error
        behaviour[0] = loopback.payload(
            payload.replace('err_code="79"', 'err_code="48"').replace("} 79", "} 48")
        )
        third = scrape(url)
    mig1 = dcgm_labels(
        "0",
        "GPU-ccc",
        "NVIDIA A100-SXM4-80GB",
        hostname="node-2",
        mig_profile="3g.40gb",
        mig_instance="1",
    )
    mig2 = {**mig1, "mig_instance": "2"}
    assert value(first, catalog.GPU_ENGINE_ACTIVE.name, **mig1) == 0.40
    assert value(first, catalog.GPU_ENGINE_ACTIVE.name, **mig2) == 0.10
    assert value(first, catalog.GPU_DRAM_ACTIVE.name, **mig1) == 0.55
    assert value(first, catalog.GPU_MEMORY_TOTAL.name, **mig2) == 40448 * 2**20
    assert not [n for n, _ in first if n == catalog.GPU_UTILIZATION.name]  # DCGM gives none
    for series in (first, second):
        assert value(series, catalog.GPU_XID_EVENTS.name, **mig1) == 0
        assert not [n for n, _ in series if n == catalog.GPU_XID_ERRORS.name]
    assert value(third, catalog.GPU_XID_ERRORS.name, **mig1, xid="48") == 1
    assert value(third, catalog.GPU_XID_EVENTS.name, **mig1) == 1


def xid_payload(code: int, gpus: tuple[str, ...] = ("0", "1")) -> str:
    """dcgm-exporter's answer for GPUs with XID gauge `code` (err_code as d5e5f51 writes it)."""
    return "".join(
        f'{DCGM.XID}{{gpu="{g}",UUID="GPU-{g}",modelName="H100",Hostname="n",'
        f'err_code="{code}",err_msg="x"}} {code}\n{DCGM.GPU_UTIL}{{gpu="{g}",UUID="GPU-{g}",'
        f'modelName="H100",Hostname="n"}} 50\n'
        for g in gpus
    )


def test_one_xid_is_counted_once_across_restarts_of_either_exporter() -> None:
    ours = DcgmCollector("http://127.0.0.1:9/")
    events = catalog.GPU_XID_EVENTS.name

    def count(collector: DcgmCollector, text: str) -> float:
        got = scrape_samples(collector.read(text))
        return value(got, events, **dcgm_labels("0", "GPU-0", "H100", hostname="n"))

    assert count(ours, xid_payload(0)) == 0
    assert count(ours, xid_payload(79)) == 1  # the XID
    assert count(ours, xid_payload(79)) == 1
    assert count(ours, xid_payload(0)) == 1  # dcgm-exporter restarted: 0 until the next XID
    assert count(ours, xid_payload(79)) == 2  # a new XID, the same code
    restarted = DcgmCollector("http://127.0.0.1:9/")  # ours restarted: 79 is still shown
    assert count(restarted, xid_payload(79)) == 0
    assert count(restarted, xid_payload(79)) == 0


def test_a_gpu_that_disappears_from_dcgm_is_up_0_until_it_returns() -> None:
    collector = DcgmCollector("http://127.0.0.1:9/")
    up = catalog.GPU_UP.name
    gpu1 = dcgm_labels("1", "GPU-1", "H100", hostname="n")
    assert value(scrape_samples(collector.read(xid_payload(0))), up, **gpu1) == 1
    assert value(scrape_samples(collector.read(xid_payload(0, ("0",)))), up, **gpu1) == 0
    assert value(scrape_samples(collector.read(xid_payload(0))), up, **gpu1) == 1


def test_old_namespace_labels_keep_the_uuid_and_the_pod() -> None:
    """--use-old-namespace (dcgm-exporter d5e5f51): `uuid`, `pod_name`, `pod_namespace`."""
    text = (
        f'{DCGM.GPU_UTIL}{{gpu="0",uuid="GPU-7",modelName="H100",Hostname="n",'
        f'pod_name="vllm-0",pod_namespace="serving",container_name="vllm"}} 25\n'
    )
    got = scrape_samples(DcgmCollector("http://127.0.0.1:9/").read(text))
    labels = dcgm_labels(
        "0", "GPU-7", "H100", hostname="n", pod="vllm-0", namespace="serving", container="vllm"
    )
    assert value(got, catalog.GPU_UTILIZATION.name, **labels) == 0.25


def test_dcgm_with_its_default_counters_says_which_of_our_metrics_it_cannot_give() -> None:
    """The default counters file (d5e5f51 etc/default-counters.csv) has no power limit,
    no ECC, no clocks-event reasons and no SM activity; nothing from DCGM gives per-process
    memory. Our counters file (compose/dcgm-counters.csv) leaves only the latter out."""
    with loopback.http(loopback.payload((FIXTURES / "dcgm_default.metrics").read_text())) as (
        upstream,
        _,
    ):
        collector = DcgmCollector(upstream)
        list(collector.collect())
    assert set(collector.missing) == {
        catalog.GPU_POWER_LIMIT.name,
        catalog.GPU_ECC_ERRORS.name,
        catalog.GPU_CLOCKS_EVENT.name,
        catalog.GPU_SM_ACTIVE.name,
        catalog.GPU_PROCESS_MEMORY.name,
    }
    fields = counters_file_fields()
    wanted = DcgmCollector.WANTED - {DCGM.CLOCKS_THROTTLE}  # the older name of CLOCKS_EVENT
    assert wanted <= fields
    given = {name for name, sources in DcgmCollector.GIVEN_BY.items() if fields & set(sources)}
    assert {m.name for m in catalog.GPU_METRICS} - given == {catalog.GPU_PROCESS_MEMORY.name}


def counters_file_fields() -> set[str]:
    """The fields of compose/dcgm-counters.csv, each line checked against dcgm-exporter's
    format: `field, type, help`, type one of gauge, counter, label."""
    fields = set()
    for number, line in enumerate((ROOT / "compose" / "dcgm-counters.csv").read_text().split("\n")):
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, help_text = (part.strip() for part in line.split(",", 2))
        assert name.startswith("DCGM_FI_") and kind in ("gauge", "counter", "label"), number
        assert help_text, number
        fields.add(name)
    return fields


def test_an_unreachable_dcgm_exporter_is_source_up_0() -> None:
    with loopback.exporter(DcgmCollector(f"http://127.0.0.1:{loopback.free_port()}")) as url:
        series = scrape(url)
    assert value(series, catalog.GPU_EXPORTER_SOURCE_UP.name, source="dcgm") == 0
    assert value(series, catalog.GPU_EXPORTER_ERRORS.name, reason="refused") == 1
    gpu_names = {m.name for m in catalog.GPU_METRICS}
    assert not [name for name, _ in series if name in gpu_names]  # nothing stale


def test_the_command_serves_dcgm_and_nvml_over_http() -> None:
    exe = Path(sys.executable).parent / "llm-gpu-exporter"
    with loopback.http(loopback.payload((FIXTURES / "dcgm.metrics").read_text())) as (upstream, _):
        for source, expected in (("dcgm", 1.0), ("nvml", 0.0)):  # no driver here: nvml is up 0
            port = loopback.free_port()
            command: list[str | Path] = [
                exe,
                "--source",
                source,
                "--dcgm-url",
                upstream,
                "--listen",
                f"127.0.0.1:{port}",
            ]
            process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
            try:
                loopback.wait_until_up(f"http://127.0.0.1:{port}/metrics", process)
                series = scrape(f"http://127.0.0.1:{port}/metrics")
            finally:
                process.terminate()
                process.wait(timeout=10)
            assert value(series, catalog.GPU_EXPORTER_SOURCE_UP.name, source=source) == expected


def test_the_command_says_at_start_and_as_a_metric_what_dcgm_cannot_give() -> None:
    exe = Path(sys.executable).parent / "llm-gpu-exporter"
    body = (FIXTURES / "dcgm_default.metrics").read_text()
    with loopback.http(loopback.payload(body)) as (upstream, _):
        port = loopback.free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        command = [
            str(exe),
            "--source",
            "dcgm",
            "--dcgm-url",
            upstream,
            "--listen",
            f"127.0.0.1:{port}",
        ]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            loopback.wait_until_up(url, process)
            series = scrape(url)
        finally:
            process.terminate()
            _, stderr = process.communicate(timeout=10)
    assert f"{catalog.GPU_POWER_LIMIT.name} ({DCGM.POWER_LIMIT})" in stderr
    assert "compose/dcgm-counters.csv" in stderr and "Traceback" not in stderr
    missing = catalog.GPU_EXPORTER_MISSING.name
    assert value(series, missing, metric=catalog.GPU_POWER_LIMIT.name) == 1
    assert (missing, frozenset({("metric", catalog.GPU_UTILIZATION.name)})) not in series


def test_dcgm_with_its_default_counters_series_by_series() -> None:
    """Every series the exporter serves from dcgm-exporter's default counters, from the
    fixture's values alone, and every input family read or listed as unmapped."""
    text = (FIXTURES / "dcgm_default.metrics").read_text()
    got = {
        key: v
        for key, v in scrape_samples(DcgmCollector("http://127.0.0.1:9/").read(text)).items()
        if key[0] in {m.name for m in catalog.GPU_METRICS}
    }
    per_gpu: list[tuple[catalog.Metric, float, dict[str, str]]] = [
        (catalog.GPU_UP, 1, {}),
        (catalog.GPU_UTILIZATION, 0.93, {}),
        (catalog.GPU_MEMORY_USED, 74000 * 2**20, {}),
        (catalog.GPU_MEMORY_TOTAL, (74000 + 6000 + 1559) * 2**20, {}),
        (catalog.GPU_POWER, 312.5, {}),
        (catalog.GPU_ENERGY, 92345678901 / 1000, {}),
        (catalog.GPU_TEMPERATURE, 41, {}),
        (catalog.GPU_SM_CLOCK, 1980e6, {}),
        (catalog.GPU_MEMORY_CLOCK, 2619e6, {}),
        (catalog.GPU_PCIE_REPLAYS, 0, {}),
        (catalog.GPU_REMAPPED_ROWS, 0, {"kind": "correctable"}),
        (catalog.GPU_REMAPPED_ROWS, 0, {"kind": "uncorrectable"}),
        (catalog.GPU_ENGINE_ACTIVE, 0.91, {}),
        (catalog.GPU_TENSOR_ACTIVE, 0.47, {}),
        (catalog.GPU_DRAM_ACTIVE, 0.62, {}),
        (catalog.GPU_XID_EVENTS, 0, {}),
    ]
    expected = {
        (
            metric.name,
            frozenset({**dcgm_labels(index, uuid, H100, hostname="node-1"), **extra}.items()),
        ): value
        for index, uuid in (("0", "GPU-aaa"), ("1", "GPU-bbb"))
        for metric, value, extra in per_gpu
    }
    assert got == pytest.approx(expected)
    read = DcgmCollector.WANTED
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert sorted(families - read - set(catalog.UNMAPPED)) == []
