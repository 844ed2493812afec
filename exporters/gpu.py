"""`llm-gpu-exporter`: GPU metrics under the catalog's names, from NVML or dcgm-exporter.

A node runs one of them. NVML (nvidia-ml-py, imported as `pynvml`; the `gpu` extra) is
read directly; dcgm-exporter is scraped over HTTP and its `DCGM_FI_*` fields mapped onto
the same names in base units. No driver, a GPU that falls off the bus
(NVMLError_GpuIsLost), an unreachable dcgm-exporter: the exporter keeps serving, says so
in the per-GPU up gauge / the source-up gauge and an error count, and recovers on its own.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Iterator
from types import ModuleType
from typing import Any, ClassVar

import requests
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters import catalog, serving, sidecar, textformat
from exporters.catalog import DCGM

NVML = "nvml"
DCGM_SOURCE = "dcgm"
DEFAULT_LISTEN = "127.0.0.1:9402"  # 9400 is dcgm-exporter's
DEFAULT_TOP_PROCESSES = 5
MIB = 1024 * 1024
MHZ = 1_000_000
ERROR_REASONS = (
    "no_driver",
    "gpu_lost",
    "nvml",
    "timeout",
    "refused",
    "dropped",
    "http_status",
    "bad_payload",
)


class Families:
    """Catalog families being filled for one scrape, created on first use."""

    def __init__(self, extra_labels: tuple[str, ...] = ()) -> None:
        self.extra = extra_labels
        self.families: dict[str, Metric] = {}

    def add(self, metric: catalog.Metric, labels: list[str], value: float) -> None:
        family = self.families.get(metric.name)
        if family is None:
            kind = CounterMetricFamily if metric.kind == catalog.COUNTER else GaugeMetricFamily
            names = [*catalog.GPU_LABELS, *self.extra, *metric.labels[len(catalog.GPU_LABELS) :]]
            family = self.families[metric.name] = kind(metric.name, metric.help, labels=names)
        family.add_metric(labels, value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.families[name] for name in sorted(self.families))


class _Health:
    """The source-up gauge and the error counter, shared by both collectors."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: dict[str, float] = dict.fromkeys(ERROR_REASONS, 0.0)

    def families(self, up: bool) -> Iterator[Metric]:
        m = catalog
        source_up = GaugeMetricFamily(
            m.GPU_EXPORTER_SOURCE_UP.name, m.GPU_EXPORTER_SOURCE_UP.help, labels=[m.SOURCE]
        )
        source_up.add_metric([self.source], 1 if up else 0)
        errors = CounterMetricFamily(
            m.GPU_EXPORTER_ERRORS.name, m.GPU_EXPORTER_ERRORS.help, labels=[m.REASON]
        )
        for reason, count in self.errors.items():
            errors.add_metric([reason], count)
        yield source_up
        yield errors


class NvmlCollector:
    """Reads every GPU through NVML at each scrape. `nvml` is pynvml or a stand-in with its API."""

    def __init__(
        self, nvml: ModuleType | Any | None = None, top_processes: int = DEFAULT_TOP_PROCESSES
    ) -> None:
        self.nvml = nvml
        self.top_processes = top_processes
        self.health = _Health(NVML)
        self.ready = False
        self.events: Any = None
        self.identities: dict[int, list[str]] = {}  # index -> labels, kept for a GPU that is lost
        self.xids: dict[tuple[str, ...], float] = defaultdict(float)

    def _module(self) -> Any:
        if self.nvml is None:
            import pynvml  # the `gpu` extra; imported only when NVML is the source

            self.nvml = pynvml
        return self.nvml

    def start(self) -> bool:
        """nvmlInit and XID event registration; False (counted) while there is no driver."""
        if self.ready:
            return True
        try:
            nvml = self._module()
        except ImportError:
            self.health.errors["no_driver"] += 1
            return False
        try:
            nvml.nvmlInit()
        except nvml.NVMLError:
            self.health.errors["no_driver"] += 1
            return False
        self.events = None
        try:
            self.events = nvml.nvmlEventSetCreate()
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                nvml.nvmlDeviceRegisterEvents(
                    handle, nvml.nvmlEventTypeXidCriticalError, self.events
                )
        except nvml.NVMLError:
            pass  # XID events are not supported everywhere; the rest still works
        self.ready = True
        return True

    def collect(self) -> Iterator[Metric]:
        families = Families()
        up = self.start()
        if up:
            nvml = self.nvml
            try:
                count = nvml.nvmlDeviceGetCount()
            except nvml.NVMLError:
                self.health.errors["nvml"] += 1
                self.ready, count, up = False, 0, False
            handles: dict[Any, list[str]] = {}
            for index in range(count):
                self._device(index, families, handles)
            self._drain_xids(handles)
            for key, total in sorted(self.xids.items()):
                families.add(catalog.GPU_XID_ERRORS, list(key), total)
        yield from self.health.families(up)
        yield from families

    def _device(self, index: int, families: Families, handles: dict[Any, list[str]]) -> None:
        nvml = self.nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            labels = [
                str(index),
                _text(nvml.nvmlDeviceGetUUID(handle)),
                _text(nvml.nvmlDeviceGetName(handle)),
            ]
        except nvml.NVMLError as error:
            self._failed(error, index, families)
            return
        self.identities[index] = labels
        handles[handle] = labels
        readings: list[tuple[catalog.Metric, list[str], float]] = []
        try:
            for metric, extra, value in self._readings(handle):
                readings.append((metric, labels + extra, value))
        except nvml.NVMLError as error:  # GPU lost mid-way: nothing of this scrape is kept
            self._failed(error, index, families)
            return
        families.add(catalog.GPU_UP, labels, 1)
        for metric, series, value in readings:
            families.add(metric, series, value)

    def _failed(self, error: Exception, index: int, families: Families) -> None:
        nvml = self.nvml
        lost = isinstance(error, nvml.NVMLError_GpuIsLost)
        self.health.errors["gpu_lost" if lost else "nvml"] += 1
        if lost:
            self.ready = False  # re-initialise NVML next scrape, so a GPU that comes back is seen
        families.add(catalog.GPU_UP, self.identities.get(index, [str(index), "", ""]), 0)

    def _readings(self, handle: Any) -> Iterator[tuple[catalog.Metric, list[str], float]]:
        """Every value of one GPU; an unsupported one is skipped, a lost GPU raises."""
        nvml, m = self.nvml, catalog

        def read(call: Any, *args: Any) -> Any:
            try:
                return call(handle, *args)
            except nvml.NVMLError_NotSupported:
                return None
            except nvml.NVMLError as error:
                if isinstance(error, nvml.NVMLError_GpuIsLost):
                    raise
                self.health.errors["nvml"] += 1
                return None

        utilization = read(nvml.nvmlDeviceGetUtilizationRates)
        if utilization is not None:
            yield m.GPU_UTILIZATION, [], utilization.gpu / 100
        memory = read(nvml.nvmlDeviceGetMemoryInfo)
        if memory is not None:
            yield m.GPU_MEMORY_USED, [], float(memory.used)
            yield m.GPU_MEMORY_TOTAL, [], float(memory.total)
        for metric, call, args, scale in (
            (m.GPU_POWER, nvml.nvmlDeviceGetPowerUsage, (), 1e-3),  # mW
            (m.GPU_POWER_LIMIT, nvml.nvmlDeviceGetEnforcedPowerLimit, (), 1e-3),  # mW
            (m.GPU_ENERGY, nvml.nvmlDeviceGetTotalEnergyConsumption, (), 1e-3),  # mJ
            (m.GPU_TEMPERATURE, nvml.nvmlDeviceGetTemperature, (nvml.NVML_TEMPERATURE_GPU,), 1),
            (m.GPU_SM_CLOCK, nvml.nvmlDeviceGetClockInfo, (nvml.NVML_CLOCK_SM,), MHZ),
            (m.GPU_MEMORY_CLOCK, nvml.nvmlDeviceGetClockInfo, (nvml.NVML_CLOCK_MEM,), MHZ),
            (m.GPU_PCIE_REPLAYS, nvml.nvmlDeviceGetPcieReplayCounter, (), 1),
        ):
            value = read(call, *args)
            if value is not None:
                yield metric, [], value * scale
        reasons = read(nvml.nvmlDeviceGetCurrentClocksEventReasons)
        if reasons is not None:
            for bit, reason in m.GPU_CLOCK_EVENT_REASONS.items():
                yield m.GPU_CLOCKS_EVENT, [reason], 1 if reasons & bit else 0
        ecc_kinds = {
            "corrected": nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
            "uncorrected": nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
        }
        for kind, error_type in ecc_kinds.items():
            value = read(nvml.nvmlDeviceGetTotalEccErrors, error_type, nvml.NVML_AGGREGATE_ECC)
            if value is not None:
                yield m.GPU_ECC_ERRORS, [kind], value
        rows = read(nvml.nvmlDeviceGetRemappedRows)
        if rows is not None:
            yield m.GPU_REMAPPED_ROWS, ["correctable"], rows[0]
            yield m.GPU_REMAPPED_ROWS, ["uncorrectable"], rows[1]
        processes = read(nvml.nvmlDeviceGetComputeRunningProcesses) or []
        used = [(p.usedGpuMemory or 0, p.pid) for p in processes]
        for memory_used, pid in sorted(used, reverse=True)[: self.top_processes]:
            yield m.GPU_PROCESS_MEMORY, [str(pid)], float(memory_used)

    def _drain_xids(self, handles: dict[Any, list[str]]) -> None:
        """Count the XID events that arrived since the last scrape, without waiting."""
        if self.events is None:
            return
        nvml = self.nvml
        while True:
            try:
                event = nvml.nvmlEventSetWait(self.events, 0)
            except nvml.NVMLError_Timeout:
                return
            except nvml.NVMLError:
                self.health.errors["nvml"] += 1
                return
            labels = handles.get(event.device, ["", "", ""])
            self.xids[(*labels, str(event.eventData))] += 1


class DcgmCollector:
    """Scrapes dcgm-exporter at each scrape and maps its fields onto the catalog's names."""

    # field -> (metric, scale, extra label values); FB_FREE and the bit masks are special.
    FIELDS: ClassVar[dict[str, tuple[catalog.Metric, float, tuple[str, ...]]]] = {
        DCGM.GPU_UTIL: (catalog.GPU_UTILIZATION, 0.01, ()),
        DCGM.FB_USED: (catalog.GPU_MEMORY_USED, MIB, ()),
        DCGM.POWER: (catalog.GPU_POWER, 1, ()),
        DCGM.POWER_LIMIT: (catalog.GPU_POWER_LIMIT, 1, ()),
        DCGM.ENERGY: (catalog.GPU_ENERGY, 1e-3, ()),
        DCGM.TEMPERATURE: (catalog.GPU_TEMPERATURE, 1, ()),
        DCGM.SM_CLOCK: (catalog.GPU_SM_CLOCK, MHZ, ()),
        DCGM.MEM_CLOCK: (catalog.GPU_MEMORY_CLOCK, MHZ, ()),
        DCGM.PCIE_REPLAYS: (catalog.GPU_PCIE_REPLAYS, 1, ()),
        DCGM.CORRECTABLE_ROWS: (catalog.GPU_REMAPPED_ROWS, 1, ("correctable",)),
        DCGM.UNCORRECTABLE_ROWS: (catalog.GPU_REMAPPED_ROWS, 1, ("uncorrectable",)),
        DCGM.ECC_CORRECTED: (catalog.GPU_ECC_ERRORS, 1, ("corrected",)),
        DCGM.ECC_UNCORRECTED: (catalog.GPU_ECC_ERRORS, 1, ("uncorrected",)),
        DCGM.SM_ACTIVE: (catalog.GPU_SM_ACTIVE, 1, ()),
        DCGM.TENSOR_ACTIVE: (catalog.GPU_TENSOR_ACTIVE, 1, ()),
        DCGM.DRAM_ACTIVE: (catalog.GPU_DRAM_ACTIVE, 1, ()),
        DCGM.ENGINE_ACTIVE: (catalog.GPU_ENGINE_ACTIVE, 1, ()),
    }
    EXTRA_LABELS = tuple(dict.fromkeys(DCGM.PASSTHROUGH.values()))
    WANTED = frozenset(
        {*FIELDS, DCGM.FB_FREE, DCGM.FB_RESERVED, DCGM.CLOCKS_EVENT, DCGM.CLOCKS_THROTTLE, DCGM.XID}
    )

    def __init__(self, url: str, timeout: float = sidecar.DEFAULT_TIMEOUT) -> None:
        self.url = sidecar.metrics_url(url)
        self.timeout = timeout
        self.health = _Health(DCGM_SOURCE)
        self.session = requests.Session()
        self.last_xid: dict[tuple[str, ...], float] = {}
        self.xids: dict[tuple[str, ...], float] = defaultdict(float)

    def collect(self) -> Iterator[Metric]:
        try:
            families = self.read(self.fetch())
        except sidecar.ScrapeError as error:
            self.health.errors[error.reason] += 1
            yield from self.health.families(False)
            return
        yield from self.health.families(True)
        yield from families

    def fetch(self) -> str:
        try:
            answer = self.session.get(
                self.url, timeout=self.timeout, headers={"Accept-Encoding": "identity"}
            )
        except requests.Timeout as error:
            raise sidecar.ScrapeError("timeout", str(error)) from None
        except requests.ConnectionError as error:
            reason = "refused" if "refused" in str(error).lower() else "dropped"
            raise sidecar.ScrapeError(reason, str(error)) from None
        except requests.RequestException as error:
            raise sidecar.ScrapeError("dropped", str(error)) from None
        if answer.status_code != 200:
            raise sidecar.ScrapeError("http_status", f"HTTP {answer.status_code}")
        return answer.text

    def read(self, text: str) -> Families:
        families = Families(self.EXTRA_LABELS)
        memory: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        seen: set[tuple[str, ...]] = set()
        try:
            for name, labels, value in textformat.samples(text, self.WANTED):
                key = self._labels(labels)
                seen.add(key)
                if name in self.FIELDS:
                    metric, scale, extra = self.FIELDS[name]
                    families.add(metric, [*key, *extra], value * scale)
                elif name in (DCGM.FB_FREE, DCGM.FB_RESERVED):
                    memory[key][name] = value
                elif name in (DCGM.CLOCKS_EVENT, DCGM.CLOCKS_THROTTLE):
                    for bit, reason in catalog.GPU_CLOCK_EVENT_REASONS.items():
                        families.add(
                            catalog.GPU_CLOCKS_EVENT, [*key, reason], 1 if int(value) & bit else 0
                        )
                elif name == DCGM.XID:
                    self._xid(key, value)
                if name == DCGM.FB_USED:
                    memory[key][name] = value
        except (textformat.ParseError, ValueError) as error:
            raise sidecar.ScrapeError("bad_payload", str(error)) from None
        if not seen:
            raise sidecar.ScrapeError("bad_payload", "no DCGM_FI_* field in the payload")
        for key, fields in memory.items():
            if DCGM.FB_USED in fields and DCGM.FB_FREE in fields:
                total = sum(
                    fields.get(f, 0.0) for f in (DCGM.FB_USED, DCGM.FB_FREE, DCGM.FB_RESERVED)
                )
                families.add(catalog.GPU_MEMORY_TOTAL, list(key), total * MIB)
        for key in sorted(seen):
            families.add(catalog.GPU_UP, list(key), 1)
        for key, count in sorted(self.xids.items()):
            families.add(catalog.GPU_XID_ERRORS, list(key), count)
        return families

    def _labels(self, labels: dict[str, str]) -> tuple[str, ...]:
        ours = dict.fromkeys(self.EXTRA_LABELS, "")
        for theirs, name in DCGM.PASSTHROUGH.items():
            if labels.get(theirs):
                ours[name] = labels[theirs]
        identity = (
            labels.get(DCGM.LABEL_GPU, ""),
            labels.get(DCGM.LABEL_UUID, ""),
            labels.get(DCGM.LABEL_MODEL, ""),
        )
        return (*identity, *ours.values())

    def _xid(self, key: tuple[str, ...], value: float) -> None:
        """dcgm-exporter shows the last XID code as a gauge: count each change to a code."""
        if value and value != self.last_xid.get(key):
            self.xids[(*key, str(int(value)))] += 1
        self.last_xid[key] = value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-gpu-exporter", description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["auto", NVML, DCGM_SOURCE], default="auto")
    parser.add_argument("--dcgm-url", default="http://127.0.0.1:9400/metrics")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT")
    parser.add_argument("--timeout", type=float, default=sidecar.DEFAULT_TIMEOUT)
    parser.add_argument("--top-processes", type=int, default=DEFAULT_TOP_PROCESSES)
    args = parser.parse_args(argv)
    nvml = NvmlCollector(top_processes=args.top_processes)
    source = args.source
    if source == "auto":  # NVML if a driver answers now, else dcgm-exporter
        source = NVML if nvml.start() else DCGM_SOURCE
    collector = nvml if source == NVML else DcgmCollector(args.dcgm_url, args.timeout)
    return serving.run(collector, args.listen, parser.prog, source)


if __name__ == "__main__":
    sys.exit(main())
