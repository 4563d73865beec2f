"""The timeline's per-GPU column names, ``gpu{i}_<metric>``: built and parsed here only.

>>> gpu_column(0, "util_percent")
'gpu0_util_percent'
>>> parse_gpu_column("gpu12_mem_used_mb")
(12, 'mem_used_mb')
>>> gpu_indices(["time_s", "gpu1_util_percent", "gpu0_util_percent", "gpu0_power_w"])
[0, 1]
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The GPM columns' suffixes (Hopper and newer; NaN elsewhere; see whisperkit.measure.gpm), each
#: over the time since the previous sample, 0-100: percent of SMs busy, active warps against the
#: theoretical maximum, time the SMs ran tensor-core work, DRAM bandwidth used against the maximum.
GPM_METRICS = ("sm_active_percent", "sm_occupancy_percent", "tensor_active_percent", "dram_bw_percent")

#: Per-device metric suffixes, in column order (``gpu{i}_<suffix>``); units in the names.
GPU_METRICS = (
    "util_percent",  # percent of the last driver period with a kernel running (see sampler.py)
    "mem_util_percent",  # percent of that period with device memory being read or written
    "mem_used_mb",  # MiB allocated by processes (NVML memory v2; where only v1 answers, the reservation too)
    "mem_total_mb",  # MiB
    "power_w",  # watts (NVML reports milliwatts)
    "sm_clock_mhz",  # MHz
    "temperature_c",  # degrees Celsius, GPU die sensor
    "process_util_percent",  # sum of smUtil of the watched processes; NaN where their PIDs cannot be matched
    "energy_j",  # joules since the driver loaded (NVML total energy counter, Volta and newer; NaN elsewhere)
    "mem_reserved_mb",  # MiB the driver reserves for itself (NVML memory v2; NaN where only v1 answers)
    *GPM_METRICS,
)

_GPU_COLUMN = re.compile(r"gpu(\d+)_([a-z_]+)")


def gpu_column(index: int, metric: str) -> str:
    """The column name of GPU ``index``'s ``metric`` (one of :data:`GPU_METRICS`)."""
    return f"gpu{index}_{metric}"


def gpu_columns(index: int) -> list[str]:
    """Every column of GPU ``index``, in :data:`GPU_METRICS` order."""
    return [gpu_column(index, metric) for metric in GPU_METRICS]


def parse_gpu_column(name: str) -> tuple[int, str] | None:
    """``(index, metric)`` of a ``gpu{i}_<metric>`` column, or None for any other name."""
    match = _GPU_COLUMN.fullmatch(str(name))
    return (int(match.group(1)), match.group(2)) if match else None


def gpu_indices(columns: Iterable[object] | None) -> list[int]:
    """GPU numbers ``i`` that have a ``gpu{i}_util_percent`` column, in order.

    ``columns`` is any iterable of column names (a timeline's ``columns``, a sample's keys), or None.
    """
    if columns is None:
        return []
    parsed = (parse_gpu_column(str(column)) for column in columns)
    return sorted(found[0] for found in parsed if found and found[1] == "util_percent")
