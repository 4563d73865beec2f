"""What this machine has, asked the way whisperkit asks, so that expectations follow the machine.

The suite runs on CPU-only boxes, GPU workstations, and GPU boxes whose CUDA libraries are missing
(``PYTHONPATH=/work/shared/tools/simgpu`` makes any machine look like the last kind). Tests never
assert that there is no GPU: they compare with these answers, read once, before any test puts a
fake ``pynvml`` in place.
"""

from __future__ import annotations

import ctypes.util
import functools
import os

#: True where an NVIDIA driver library (libnvidia-ml) is installed, whether or not NVML then shows a GPU
HAS_REAL_NVML = ctypes.util.find_library("nvidia-ml") is not None
#: a sampler's CPU columns here, in order: one ``cpuN_percent`` per core, then this process's tree
CPU_COLUMNS = ["time_s", "cpu_percent", *(f"cpu{i}_percent" for i in range(os.cpu_count())),
               "process_cpu_percent", "process_rss_mb", "mem_used_percent"]


@functools.lru_cache(maxsize=1)
def auto_device() -> tuple[str, str | None]:
    """``(device, reason)`` that ``device="auto"`` picks here (reason: why not cuda, or None)."""
    from whisperkit.core.models import device_choice

    choice = device_choice("auto")
    return choice.device, choice.reason


def cuda_usable() -> bool:
    """True where ``device="auto"`` runs the model on a GPU."""
    return auto_device()[0] == "cuda"


@functools.lru_cache(maxsize=1)
def auto_compute_type() -> str:
    from whisperkit.core.models import pick_compute_type

    return pick_compute_type(auto_device()[0], "auto")


@functools.lru_cache(maxsize=1)
def nvml_gpus() -> tuple[tuple[dict, ...], str | None]:
    """The GPUs the real NVML shows here, and why there are none (None when there are some)."""
    from whisperkit.measure.nvml import gpu_inventory

    gpus, reason = gpu_inventory()
    return tuple(gpus), reason


def has_nvml_gpu() -> bool:
    """True where NVML answers with at least one GPU (the sampler then records GPU columns)."""
    return bool(nvml_gpus()[0])


def cuda_device_count() -> int:
    from whisperkit.measure.cuda import cuda_device_count as count

    return count()
