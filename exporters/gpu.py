"""`llm-gpu-exporter`: GPU metrics under the catalog's names, from NVML or dcgm-exporter.

A node runs one of them. NVML (nvidia-ml-py, imported as `pynvml`; the `gpu` extra) is
read directly; dcgm-exporter is scraped over HTTP and its `DCGM_FI_*` fields mapped onto
the same names in base units. No driver, a GPU that falls off the bus
(NVMLError_GpuIsLost), an unreachable dcgm-exporter: the exporter keeps serving, says so
in the per-GPU up gauge / the source-up gauge and an error count, and recovers on its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import partial
from typing import ClassVar, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from llm_slo_stack.exporters import catalog, serving, textformat
from llm_slo_stack.exporters.catalog import DCGM
from llm_slo_stack.exporters.health import Health
from llm_slo_stack.exporters.nvml import (
    GpuLost,
    NotSupported,
    Nvml,
    NvmlError,
    PynvmlBinding,
    Reading,
    simulated_nvml,
)
from llm_slo_stack.exporters.upstream import DEFAULT_TIMEOUT, ScrapeError, Upstream

NVML = "nvml"
DCGM_SOURCE = "dcgm"
FAKE_SOURCE = "fake"  # simulated GPUs behind the NVML interface: `make demo` without a GPU
DEFAULT_LISTEN = "127.0.0.1:9402"  # 9400 is dcgm-exporter's
DEFAULT_TOP_PROCESSES = 5
MIB = 1024 * 1024
MHZ = 1_000_000
T = TypeVar("T")


class Families:
    """Catalog families being filled for one scrape, created on first use."""

    def __init__(self, extra_labels: tuple[str, ...] = ()) -> None:
        self.extra = extra_labels
        self.families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

    def add(self, metric: catalog.Metric, labels: list[str], value: float) -> None:
        family = self.families.get(metric.name)
        if family is None:
            kind = CounterMetricFamily if metric.kind == catalog.COUNTER else GaugeMetricFamily
            names = [*catalog.GPU_LABELS, *self.extra, *metric.labels[len(catalog.GPU_LABELS) :]]
            family = self.families[metric.name] = kind(metric.name, metric.help, labels=names)
        family.add_metric(labels, value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self.families[name] for name in sorted(self.families))

    def missing(self, given: set[str]) -> list[str]:
        """Our GPU metrics with no series this scrape, but those in `given` (a source
        that gives a metric may have nothing to say yet: no XID, no process)."""
        have = set(self.families) | given
        return [m.name for m in catalog.GPU_METRICS if m.name not in have]


def missing_family(names: list[str]) -> GaugeMetricFamily:
    metric = catalog.GPU_EXPORTER_MISSING
    family = GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))
    for name in names:
        family.add_metric([name], 1)
    return family


def _health(source: str) -> Health:
    """The source-up gauge and the error counter, the same for both collectors."""
    m = catalog
    return Health(
        m.GPU_EXPORTER_SOURCE_UP, m.GPU_EXPORTER_ERRORS, m.GPU_ERROR_REASONS, {m.SOURCE: source}
    )


class NvmlCollector:
    """Reads every GPU through an `Nvml` (the real binding unless given) at each scrape."""

    READINGS: ClassVar[tuple[tuple[catalog.Metric, Reading, float, tuple[str, ...]], ...]] = (
        (catalog.GPU_UTILIZATION, Reading.UTILIZATION_PERCENT, 0.01, ()),
        (catalog.GPU_MEMORY_USED, Reading.MEMORY_USED_BYTES, 1, ()),
        (catalog.GPU_MEMORY_TOTAL, Reading.MEMORY_TOTAL_BYTES, 1, ()),
        (catalog.GPU_POWER, Reading.POWER_MILLIWATTS, 1e-3, ()),
        (catalog.GPU_POWER_LIMIT, Reading.POWER_LIMIT_MILLIWATTS, 1e-3, ()),
        (catalog.GPU_ENERGY, Reading.ENERGY_MILLIJOULES, 1e-3, ()),
        (catalog.GPU_TEMPERATURE, Reading.TEMPERATURE_CELSIUS, 1, ()),
        (catalog.GPU_SM_CLOCK, Reading.SM_CLOCK_MHZ, MHZ, ()),
        (catalog.GPU_MEMORY_CLOCK, Reading.MEMORY_CLOCK_MHZ, MHZ, ()),
        (catalog.GPU_PCIE_REPLAYS, Reading.PCIE_REPLAYS, 1, ()),
        (catalog.GPU_ECC_ERRORS, Reading.ECC_CORRECTED, 1, ("corrected",)),
        (catalog.GPU_ECC_ERRORS, Reading.ECC_UNCORRECTED, 1, ("uncorrected",)),
        (catalog.GPU_REMAPPED_ROWS, Reading.REMAPPED_CORRECTABLE, 1, ("correctable",)),
        (catalog.GPU_REMAPPED_ROWS, Reading.REMAPPED_UNCORRECTABLE, 1, ("uncorrectable",)),
    )

    def __init__(
        self, nvml: Nvml | None = None, top_processes: int = DEFAULT_TOP_PROCESSES
    ) -> None:
        self.nvml: Nvml = nvml if nvml is not None else PynvmlBinding()
        self.top_processes = top_processes
        self.health = _health(NVML)
        self.ready = False
        self.identities: dict[int, list[str]] = {}  # index -> labels, kept for a GPU that is lost
        self.xids: dict[tuple[str, ...], float] = defaultdict(float)
        self.xid_events: dict[tuple[str, ...], float] = defaultdict(float)  # per GPU
        self.watching_xids = False
        self.missing: list[str] = []
        self._processes_given = False

    def start(self) -> bool:
        """Start NVML and watch for XID events; False (counted) while there is no driver."""
        if self.ready:
            return True
        try:
            self.nvml.init()
        except NvmlError:
            self.health.count(catalog.GPU_NO_DRIVER)
            return False
        try:
            self.nvml.device_count()
            self.nvml.watch_xids()
            self.watching_xids = True
        except NvmlError:
            pass  # XID events are not supported everywhere; the rest still works
        self.ready = True
        return True

    def collect(self) -> Iterator[Metric]:
        families = Families()
        up = self.start()
        if up:
            try:
                count = self.nvml.device_count()
            except NvmlError:
                self.health.count(catalog.GPU_NVML_ERROR)
                self.ready, count, up = False, 0, False
            self._processes_given = False
            for index in range(count):
                self._device(index, families)
            self._drain_xids()
            for key, total in sorted(self.xids.items()):
                families.add(catalog.GPU_XID_ERRORS, list(key), total)
            if self.watching_xids:
                for labels in self.identities.values():
                    families.add(catalog.GPU_XID_EVENTS, labels, self.xid_events[tuple(labels)])
            given = {catalog.GPU_PROCESS_MEMORY.name} if self._processes_given else set()
            if self.watching_xids:
                given.add(catalog.GPU_XID_ERRORS.name)
            self.missing = families.missing(given)
        yield from self.health.families(up)
        yield missing_family(self.missing)
        yield from families

    def _device(self, index: int, families: Families) -> None:
        try:
            identity = self.nvml.identity(index)
            labels = [str(index), identity.uuid, identity.name]
            self.identities[index] = labels
            readings = [
                (metric, labels + extra, value) for metric, extra, value in self._readings(index)
            ]
        except NvmlError as error:  # GPU lost mid-way: nothing of this scrape is kept
            self._failed(error, index, families)
            return
        families.add(catalog.GPU_UP, labels, 1)
        for metric, series, value in readings:
            families.add(metric, series, value)

    def _failed(self, error: NvmlError, index: int, families: Families) -> None:
        lost = isinstance(error, GpuLost)
        self.health.count(catalog.GPU_LOST if lost else catalog.GPU_NVML_ERROR)
        if lost:
            self.ready = False  # re-initialise NVML next scrape, so a GPU that comes back is seen
        families.add(catalog.GPU_UP, self.identities.get(index, [str(index), "", ""]), 0)

    def _attempt(self, call: Callable[[], T]) -> T | None:
        """An NVML answer; None if unsupported or failed (counted); a lost GPU raises."""
        try:
            return call()
        except NotSupported:
            return None
        except GpuLost:
            raise
        except NvmlError:
            self.health.count(catalog.GPU_NVML_ERROR)
            return None

    def _readings(self, index: int) -> Iterator[tuple[catalog.Metric, list[str], float]]:
        """Every value of one GPU in base units; an unsupported one is skipped."""
        read = self.nvml.reading
        for metric, reading, scale, extra in self.READINGS:
            value = self._attempt(partial(read, index, reading))
            if value is not None:
                yield metric, list(extra), value * scale
        reasons = self._attempt(partial(read, index, Reading.CLOCKS_EVENT_REASONS))
        if reasons is not None:
            for bit, reason in catalog.GPU_CLOCK_EVENT_REASONS.items():
                yield catalog.GPU_CLOCKS_EVENT, [reason], 1 if int(reasons) & bit else 0
        processes = self._attempt(partial(self.nvml.processes, index))
        self._processes_given |= processes is not None
        for used, pid in sorted(((u, p) for p, u in processes or []), reverse=True)[
            : self.top_processes
        ]:
            yield catalog.GPU_PROCESS_MEMORY, [str(pid)], float(used)

    def _drain_xids(self) -> None:
        """Count the XID events that arrived since the last scrape, without waiting."""
        while True:
            try:
                event = self.nvml.next_xid()
            except NvmlError:
                self.health.count(catalog.GPU_NVML_ERROR)
                return
            if event is None:
                return
            labels = self.identities.get(event.index, ["", "", ""])
            self.xids[(*labels, str(event.code))] += 1
            self.xid_events[tuple(labels)] += 1


def _given_by(
    fields: dict[str, tuple[catalog.Metric, float, tuple[str, ...]]], wanted: frozenset[str]
) -> dict[str, tuple[str, ...]]:
    """Per GPU metric, the DCGM fields that give it (none: DCGM cannot)."""
    given = {
        metric.name: tuple(field for field, (m, _, _) in fields.items() if m is metric)
        for metric in catalog.GPU_METRICS
    }
    return given | {
        catalog.GPU_UP.name: tuple(sorted(wanted)),
        catalog.GPU_MEMORY_TOTAL.name: (DCGM.FB_FREE,),
        catalog.GPU_CLOCKS_EVENT.name: (DCGM.CLOCKS_EVENT, DCGM.CLOCKS_THROTTLE),
        catalog.GPU_XID_ERRORS.name: (DCGM.XID,),
        catalog.GPU_XID_EVENTS.name: (DCGM.XID,),
    }


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

    # What gives each of our metrics, for saying which ones the source's counters lack.
    GIVEN_BY: ClassVar[dict[str, tuple[str, ...]]] = _given_by(FIELDS, WANTED)
    # Where the MIG instance sits among a series' labels.
    MIG_AT = len(catalog.GPU_LABELS) + EXTRA_LABELS.index(DCGM.PASSTHROUGH[DCGM.LABEL_MIG_INSTANCE])

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.upstream = Upstream(url, timeout)
        self.health = _health(DCGM_SOURCE)
        self.last_xid: dict[tuple[str, ...], float] = {}
        self.xids: dict[tuple[str, ...], float] = defaultdict(float)
        self.xid_events: dict[tuple[str, ...], float] = defaultdict(float)
        # GPU (or MIG slice) identity -> its labels when last seen: one that disappears
        # from dcgm-exporter's answer is served as down, not left out.
        self.known: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.missing: list[str] = []

    def collect(self) -> Iterator[Metric]:
        try:
            families = self.read(self.upstream.fetch())
        except ScrapeError as error:
            self.health.count(error.reason)
            yield from self.health.families(False)
            return
        yield from self.health.families(True)
        yield missing_family(self.missing)
        yield from families

    def read(self, text: str) -> Families:
        families = Families(self.EXTRA_LABELS)
        memory: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        seen: set[tuple[str, ...]] = set()
        fields: set[str] = set()
        xid_keys: set[tuple[str, ...]] = set()
        try:
            for name, labels, value in textformat.samples(text, self.WANTED):
                key = self._labels(labels)
                seen.add(key)
                fields.add(name)
                if name in self.FIELDS:
                    metric, scale, extra = self.FIELDS[name]
                    families.add(metric, [*key, *extra], value * scale)
                elif name in (DCGM.FB_FREE, DCGM.FB_RESERVED):
                    memory[key][name] = value
                elif not math.isfinite(value):
                    continue  # a bit mask or an XID code that is not a number says nothing
                elif name in (DCGM.CLOCKS_EVENT, DCGM.CLOCKS_THROTTLE):
                    for bit, reason in catalog.GPU_CLOCK_EVENT_REASONS.items():
                        families.add(
                            catalog.GPU_CLOCKS_EVENT, [*key, reason], 1 if int(value) & bit else 0
                        )
                elif name == DCGM.XID:
                    xid_keys.add(key)
                    self._xid(key, value)
                if name == DCGM.FB_USED:
                    memory[key][name] = value
        except (textformat.ParseError, ValueError) as error:
            raise ScrapeError("bad_payload", str(error)) from None
        if not seen:
            raise ScrapeError("bad_payload", "no DCGM_FI_* field in the payload")
        for key, given in memory.items():
            if DCGM.FB_USED in given and DCGM.FB_FREE in given:
                total = sum(
                    given.get(f, 0.0) for f in (DCGM.FB_USED, DCGM.FB_FREE, DCGM.FB_RESERVED)
                )
                families.add(catalog.GPU_MEMORY_TOTAL, list(key), total * MIB)
        for key in sorted(seen):
            self.known[self._identity(key)] = key
        present = {self._identity(key) for key in seen}
        for identity, key in sorted(self.known.items()):
            families.add(catalog.GPU_UP, list(key), 1 if identity in present else 0)
        for key, count in sorted(self.xids.items()):
            families.add(catalog.GPU_XID_ERRORS, list(key), count)
        for key in sorted(xid_keys):
            families.add(catalog.GPU_XID_EVENTS, list(key), self.xid_events[key])
        self.missing = [
            name for name, sources in self.GIVEN_BY.items() if not fields.intersection(sources)
        ]
        return families

    def _labels(self, labels: dict[str, str]) -> tuple[str, ...]:
        ours = dict.fromkeys(self.EXTRA_LABELS, "")
        for theirs, name in DCGM.PASSTHROUGH.items():
            if labels.get(theirs):
                ours[name] = labels[theirs]
        identity = (
            labels.get(DCGM.LABEL_GPU, ""),
            labels.get(DCGM.LABEL_UUID) or labels.get(DCGM.LABEL_UUID_OLD, ""),
            labels.get(DCGM.LABEL_MODEL, ""),
        )
        return (*identity, *ours.values())

    def _identity(self, key: tuple[str, ...]) -> tuple[str, ...]:
        """A GPU or MIG slice whatever pod uses it: index, uuid and MIG instance."""
        return (key[0], key[1], key[self.MIG_AT])

    def _xid(self, key: tuple[str, ...], value: float) -> None:
        """dcgm-exporter shows the last XID code as a gauge: count each change to a code.

        The value at the first sight of a GPU is where counting starts, not an event: after
        this exporter restarts, the code still shown is one counted before (or one that
        happened while nobody watched). A dcgm-exporter restart shows 0 until the next XID.
        """
        last = self.last_xid.get(key)
        if last is not None and value and value != last:
            self.xids[(*key, str(int(value)))] += 1
            self.xid_events[key] += 1
        self.last_xid[key] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llm-gpu-exporter", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        choices=["auto", NVML, DCGM_SOURCE, FAKE_SOURCE],
        default="auto",
        help="fake: two simulated, healthy GPUs (the demo's; never chosen by auto)",
    )
    parser.add_argument("--dcgm-url", default="http://127.0.0.1:9400/metrics")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--top-processes", type=int, default=DEFAULT_TOP_PROCESSES)
    args = parser.parse_args(argv)
    if args.source == NVML and importlib.util.find_spec("pynvml") is None:
        print(
            f"{parser.prog}: --source nvml needs nvidia-ml-py; install the 'gpu' extra: "
            "pip install 'llm-slo-stack[gpu]'",
            file=sys.stderr,
        )
        return 2
    fake = simulated_nvml() if args.source == FAKE_SOURCE else None
    nvml = NvmlCollector(fake, top_processes=args.top_processes)
    source = NVML if fake is not None else args.source
    if source == "auto":  # NVML if a driver answers now, else dcgm-exporter
        source = NVML if nvml.start() else DCGM_SOURCE
    collector = nvml if source == NVML else DcgmCollector(args.dcgm_url, args.timeout)
    announce_missing(collector, parser.prog)
    return serving.run(collector, args.listen, parser.prog, source)


def announce_missing(collector: NvmlCollector | DcgmCollector, program: str) -> None:
    """Scrape once at start and say which of our GPU metrics the source cannot give."""
    list(collector.collect())
    if not collector.missing:
        return
    if isinstance(collector, DcgmCollector):
        given_by = DcgmCollector.GIVEN_BY
        named = [f"{n} ({', '.join(given_by[n]) or 'no DCGM field'})" for n in collector.missing]
        hint = "; add the fields to dcgm-exporter's counters file (compose/dcgm-counters.csv)"
    else:
        named, hint = list(collector.missing), " (not supported by this GPU or driver)"
    print(f"{program}: the source gives none of: {', '.join(named)}{hint}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
