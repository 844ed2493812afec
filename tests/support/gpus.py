"""Two fake GPUs for the NVML path, and the labels that name a GPU."""

from __future__ import annotations

from llm_slo_stack.exporters.nvml import FakeGpu, Reading

H100 = "NVIDIA H100 80GB HBM3"


def gpus() -> list[FakeGpu]:
    return [
        FakeGpu(
            "GPU-0",
            H100,
            clocks_event_reasons=0x4 | 0x40,
            ecc=(3, 1),
            remapped_rows=(2, 0),
            pcie_replays=7,
            processes=[(101, 30 * 2**30), (102, 8 * 2**30), (103, 2 * 2**30)],
        ),  # fmt: skip
        FakeGpu(
            "GPU-1",
            H100,
            utilization=0,
            memory_used=2**30,
            not_supported={Reading.POWER_MILLIWATTS},
        ),
    ]


def gpu(index: int, uuid: str) -> dict[str, str]:
    return {"gpu": str(index), "uuid": uuid, "gpu_name": H100}
