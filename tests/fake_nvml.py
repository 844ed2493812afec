"""An in-memory NVML behind pynvml's own API: the functions the GPU exporter calls, with
pynvml's constants and exception classes, each GPU's values and failures set by the test."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml


@dataclass(eq=False)  # a handle: hashed by identity, as pynvml's are
class FakeGpu:
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
    not_supported: set[str] = field(default_factory=set)  # nvmlDeviceGet* names
    lost: bool = False


class FakeNvml:
    NVMLError = pynvml.NVMLError
    NVMLError_GpuIsLost = pynvml.NVMLError_GpuIsLost
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_Timeout = pynvml.NVMLError_Timeout
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_MEMORY_ERROR_TYPE_CORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_AGGREGATE_ECC = pynvml.NVML_AGGREGATE_ECC
    nvmlEventTypeXidCriticalError = pynvml.nvmlEventTypeXidCriticalError

    def __init__(self, gpus: list[FakeGpu], driver: bool = True) -> None:
        self.gpus = gpus
        self.driver = driver
        self.inits = 0
        self.xid_events: list[tuple[int, int]] = []  # (gpu index, XID code), drained by waits

    def nvmlInit(self) -> None:
        if not self.driver:
            raise pynvml.NVMLError_DriverNotLoaded()
        self.inits += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self._gpu(self.gpus[index], "nvmlDeviceGetHandleByIndex")

    def _gpu(self, gpu: FakeGpu, call: str) -> FakeGpu:
        if gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        if call in gpu.not_supported:
            raise pynvml.NVMLError_NotSupported()
        return gpu

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return self._gpu(gpu, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> bytes:
        return self._gpu(gpu, "nvmlDeviceGetName").name.encode()  # older pynvml returns bytes

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(
            gpu=self._gpu(gpu, "nvmlDeviceGetUtilizationRates").utilization, memory=0
        )

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        g = self._gpu(gpu, "nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(
            used=g.memory_used, total=g.memory_total, free=g.memory_total - g.memory_used
        )

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        return self._gpu(gpu, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        return self._gpu(gpu, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu) -> int:
        return self._gpu(gpu, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._gpu(gpu, "nvmlDeviceGetTemperature").temperature

    def nvmlDeviceGetClockInfo(self, gpu: FakeGpu, clock: int) -> int:
        g = self._gpu(gpu, "nvmlDeviceGetClockInfo")
        return {pynvml.NVML_CLOCK_SM: g.sm_mhz, pynvml.NVML_CLOCK_MEM: g.mem_mhz}[clock]

    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: FakeGpu) -> int:
        return self._gpu(gpu, "nvmlDeviceGetCurrentClocksEventReasons").clocks_event_reasons

    def nvmlDeviceGetTotalEccErrors(self, gpu: FakeGpu, error_type: int, counter: int) -> int:
        assert counter == pynvml.NVML_AGGREGATE_ECC
        return self._gpu(gpu, "nvmlDeviceGetTotalEccErrors").ecc[error_type]

    def nvmlDeviceGetRemappedRows(self, gpu: FakeGpu) -> tuple[int, int, int, int]:
        rows = self._gpu(gpu, "nvmlDeviceGetRemappedRows").remapped_rows
        return rows[0], rows[1], 0, 0

    def nvmlDeviceGetPcieReplayCounter(self, gpu: FakeGpu) -> int:
        return self._gpu(gpu, "nvmlDeviceGetPcieReplayCounter").pcie_replays

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[SimpleNamespace]:
        g = self._gpu(gpu, "nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in g.processes]

    def nvmlEventSetCreate(self) -> object:
        return object()

    def nvmlDeviceRegisterEvents(self, gpu: FakeGpu, types: int, event_set: object) -> None:
        self._gpu(gpu, "nvmlDeviceRegisterEvents")

    def nvmlEventSetWait(self, event_set: object, timeout_ms: int) -> SimpleNamespace:
        if not self.xid_events:
            raise pynvml.NVMLError_Timeout()
        index, xid = self.xid_events.pop(0)
        return SimpleNamespace(
            device=self.gpus[index], eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=xid
        )
