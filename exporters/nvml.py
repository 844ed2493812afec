"""NVML behind a small interface: the real binding (nvidia-ml-py) and an in-memory fake.

The GPU exporter asks an `Nvml` for readings in NVML's own units and for XID events; it
never touches pynvml. `PynvmlBinding` turns pynvml's exception classes into the four
errors below, so the exporter decides on types, not on messages. `FakeNvml` stands in
where there is no GPU (tests, `make demo`), with each GPU's values and faults set by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class NvmlError(Exception):
    """An NVML call failed."""


class NoDriver(NvmlError):
    """No NVIDIA driver (or no nvidia-ml-py) answers."""


class GpuLost(NvmlError):
    """The GPU fell off the bus (NVML_ERROR_GPU_IS_LOST)."""


class NotSupported(NvmlError):
    """This GPU or driver does not offer the reading."""


class Reading(enum.Enum):
    """A per-GPU value, in the unit NVML gives it."""

    UTILIZATION_PERCENT = "utilization"
    MEMORY_USED_BYTES = "memory_used"
    MEMORY_TOTAL_BYTES = "memory_total"
    POWER_MILLIWATTS = "power"
    POWER_LIMIT_MILLIWATTS = "power_limit"
    ENERGY_MILLIJOULES = "energy"
    TEMPERATURE_CELSIUS = "temperature"
    SM_CLOCK_MHZ = "sm_clock"
    MEMORY_CLOCK_MHZ = "memory_clock"
    PCIE_REPLAYS = "pcie_replays"
    CLOCKS_EVENT_REASONS = "clocks_event_reasons"  # a bit mask
    ECC_CORRECTED = "ecc_corrected"
    ECC_UNCORRECTED = "ecc_uncorrected"
    REMAPPED_CORRECTABLE = "remapped_correctable"
    REMAPPED_UNCORRECTABLE = "remapped_uncorrectable"


@dataclass(frozen=True)
class Identity:
    """What names a GPU in every series."""

    index: int
    uuid: str
    name: str


@dataclass(frozen=True)
class Xid:
    """A critical XID event: the GPU's index and the code."""

    index: int
    code: int


class Nvml(Protocol):
    """The NVML calls the GPU exporter makes. Any call may raise an NvmlError subclass."""

    def init(self) -> None:
        """Start NVML; NoDriver when no driver answers."""

    def device_count(self) -> int:
        """How many GPUs; called once at the start of each scrape, which it begins."""

    def identity(self, index: int) -> Identity: ...

    def reading(self, index: int, reading: Reading) -> float: ...

    def processes(self, index: int) -> list[tuple[int, int]]:
        """(pid, GPU memory in bytes) of each compute process on the GPU."""

    def watch_xids(self) -> None:
        """Register for critical XID events on every GPU; NotSupported where it cannot."""

    def next_xid(self) -> Xid | None:
        """The next XID event that arrived, without waiting; None when there is none."""


def _answer(value: Any) -> Any:
    return value


# Where each reading comes from: the pynvml function, the pynvml constants passed after
# the handle, and what to take from the answer. Two readings may share one answer (the
# memory info, the remapped rows): the binding asks NVML once per scrape.
_SOURCES: dict[Reading, tuple[str, tuple[str, ...], Callable[[Any], Any]]] = {
    Reading.UTILIZATION_PERCENT: ("nvmlDeviceGetUtilizationRates", (), attrgetter("gpu")),
    Reading.MEMORY_USED_BYTES: ("nvmlDeviceGetMemoryInfo", (), attrgetter("used")),
    Reading.MEMORY_TOTAL_BYTES: ("nvmlDeviceGetMemoryInfo", (), attrgetter("total")),
    Reading.POWER_MILLIWATTS: ("nvmlDeviceGetPowerUsage", (), _answer),
    Reading.POWER_LIMIT_MILLIWATTS: ("nvmlDeviceGetEnforcedPowerLimit", (), _answer),
    Reading.ENERGY_MILLIJOULES: ("nvmlDeviceGetTotalEnergyConsumption", (), _answer),
    Reading.TEMPERATURE_CELSIUS: ("nvmlDeviceGetTemperature", ("NVML_TEMPERATURE_GPU",), _answer),
    Reading.SM_CLOCK_MHZ: ("nvmlDeviceGetClockInfo", ("NVML_CLOCK_SM",), _answer),
    Reading.MEMORY_CLOCK_MHZ: ("nvmlDeviceGetClockInfo", ("NVML_CLOCK_MEM",), _answer),
    Reading.PCIE_REPLAYS: ("nvmlDeviceGetPcieReplayCounter", (), _answer),
    Reading.CLOCKS_EVENT_REASONS: ("nvmlDeviceGetCurrentClocksEventReasons", (), _answer),
    Reading.ECC_CORRECTED: (
        "nvmlDeviceGetTotalEccErrors",
        ("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC"),
        _answer,
    ),
    Reading.ECC_UNCORRECTED: (
        "nvmlDeviceGetTotalEccErrors",
        ("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_AGGREGATE_ECC"),
        _answer,
    ),
    Reading.REMAPPED_CORRECTABLE: ("nvmlDeviceGetRemappedRows", (), itemgetter(0)),
    Reading.REMAPPED_UNCORRECTABLE: ("nvmlDeviceGetRemappedRows", (), itemgetter(1)),
}


class PynvmlBinding:
    """The real NVML through nvidia-ml-py (the `gpu` extra), imported on first use."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        self._answers: dict[tuple[int, str, tuple[str, ...]], Any] = {}  # this scrape's
        self._events: Any = None

    def _call(self, function: Callable[..., T], *args: Any) -> T:
        nvml = self._nvml
        try:
            return function(*args)
        except nvml.NVMLError_GpuIsLost as error:
            raise GpuLost(str(error)) from None
        except nvml.NVMLError_NotSupported as error:
            raise NotSupported(str(error)) from None
        except nvml.NVMLError as error:
            raise NvmlError(str(error)) from None

    def init(self) -> None:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                raise NoDriver("nvidia-ml-py is not installed (the `gpu` extra)") from None
            self._nvml = pynvml
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as error:
            raise NoDriver(str(error)) from None
        self._handles = []
        self._events = None

    def device_count(self) -> int:
        count = int(self._call(self._nvml.nvmlDeviceGetCount))
        self._handles = [None] * count
        self._answers = {}
        return count

    def _handle(self, index: int) -> Any:
        if index >= len(self._handles):
            self._handles += [None] * (index + 1 - len(self._handles))
        if self._handles[index] is None:
            self._handles[index] = self._call(self._nvml.nvmlDeviceGetHandleByIndex, index)
        return self._handles[index]

    def identity(self, index: int) -> Identity:
        nvml, handle = self._nvml, self._handle(index)
        uuid = self._call(nvml.nvmlDeviceGetUUID, handle)
        name = self._call(nvml.nvmlDeviceGetName, handle)
        return Identity(index, _text(uuid), _text(name))

    def reading(self, index: int, reading: Reading) -> float:
        function, constants, take = _SOURCES[reading]
        key = (index, function, constants)
        if key not in self._answers:
            nvml = self._nvml
            args = (self._handle(index), *(getattr(nvml, c) for c in constants))
            self._answers[key] = self._call(getattr(nvml, function), *args)
        return float(take(self._answers[key]))

    def processes(self, index: int) -> list[tuple[int, int]]:
        running = self._call(self._nvml.nvmlDeviceGetComputeRunningProcesses, self._handle(index))
        return [(int(p.pid), int(p.usedGpuMemory or 0)) for p in running]

    def watch_xids(self) -> None:
        nvml = self._nvml
        events = self._call(nvml.nvmlEventSetCreate)
        for index in range(len(self._handles)):
            self._call(
                nvml.nvmlDeviceRegisterEvents,
                self._handle(index),
                nvml.nvmlEventTypeXidCriticalError,
                events,
            )
        self._events = events

    def next_xid(self) -> Xid | None:
        nvml = self._nvml
        if self._events is None:
            return None
        try:
            event = nvml.nvmlEventSetWait(self._events, 0)
        except nvml.NVMLError_Timeout:
            return None
        except nvml.NVMLError as error:
            raise NvmlError(str(error)) from None
        # A new handle object each event: ask NVML which GPU it is, not our handle list.
        index = self._call(nvml.nvmlDeviceGetIndex, event.device)
        return Xid(int(index), int(event.eventData))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(eq=False)
class FakeGpu:
    """One GPU's values in NVML's units, and its faults."""

    uuid: str
    name: str
    utilization: int = 50  # percent
    memory_used: int = 40 * 2**30
    memory_total: int = 80 * 2**30
    power_mw: int = 350_000
    power_limit_mw: int = 700_000
    energy_mj: int = 9_000_000
    temperature: int = 65
    sm_mhz: int = 1980
    mem_mhz: int = 2619
    clocks_event_reasons: int = 0
    ecc: tuple[int, int] = (0, 0)  # corrected, uncorrected
    remapped_rows: tuple[int, int] = (0, 0)  # correctable, uncorrectable
    pcie_replays: int = 0
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    not_supported: set[Reading] = field(default_factory=set)
    lost: bool = False

    def value(self, reading: Reading) -> float:
        r = Reading
        values = {
            r.UTILIZATION_PERCENT: self.utilization,
            r.MEMORY_USED_BYTES: self.memory_used,
            r.MEMORY_TOTAL_BYTES: self.memory_total,
            r.POWER_MILLIWATTS: self.power_mw,
            r.POWER_LIMIT_MILLIWATTS: self.power_limit_mw,
            r.ENERGY_MILLIJOULES: self.energy_mj,
            r.TEMPERATURE_CELSIUS: self.temperature,
            r.SM_CLOCK_MHZ: self.sm_mhz,
            r.MEMORY_CLOCK_MHZ: self.mem_mhz,
            r.PCIE_REPLAYS: self.pcie_replays,
            r.CLOCKS_EVENT_REASONS: self.clocks_event_reasons,
            r.ECC_CORRECTED: self.ecc[0],
            r.ECC_UNCORRECTED: self.ecc[1],
            r.REMAPPED_CORRECTABLE: self.remapped_rows[0],
            r.REMAPPED_UNCORRECTABLE: self.remapped_rows[1],
        }
        return float(values[reading])


class FakeNvml:
    """An in-memory `Nvml`: GPUs, a driver that may be missing, XID events to deliver."""

    def __init__(self, gpus: list[FakeGpu], driver: bool = True, xid_support: bool = True) -> None:
        self.gpus = gpus
        self.driver = driver
        self.xid_support = xid_support
        self.inits = 0
        self.xid_events: list[tuple[int, int]] = []  # (GPU index, XID code), taken by next_xid
        self.watching = False

    def init(self) -> None:
        if not self.driver:
            raise NoDriver("NVML Shared Library Not Found (fake)")
        self.inits += 1

    def device_count(self) -> int:
        return len(self.gpus)

    def _gpu(self, index: int) -> FakeGpu:
        gpu = self.gpus[index]
        if gpu.lost:
            raise GpuLost("GPU is lost (fake)")
        return gpu

    def identity(self, index: int) -> Identity:
        gpu = self._gpu(index)
        return Identity(index, gpu.uuid, gpu.name)

    def reading(self, index: int, reading: Reading) -> float:
        gpu = self._gpu(index)
        if reading in gpu.not_supported:
            raise NotSupported(f"{reading.value} not supported (fake)")
        return gpu.value(reading)

    def processes(self, index: int) -> list[tuple[int, int]]:
        return list(self._gpu(index).processes)

    def watch_xids(self) -> None:
        if not self.xid_support:
            raise NotSupported("XID events not supported (fake)")
        self.watching = True

    def next_xid(self) -> Xid | None:
        if not self.watching or not self.xid_events:
            return None
        index, code = self.xid_events.pop(0)
        return Xid(index, code)


def simulated_nvml(count: int = 2) -> FakeNvml:
    """Healthy simulated GPUs for the demo, where no GPU is: the real exporter's code on
    the fake's readings, so every GPU panel and alert has data."""
    return FakeNvml([FakeGpu(f"GPU-demo-{i}", "NVIDIA H100 80GB HBM3") for i in range(count)])
