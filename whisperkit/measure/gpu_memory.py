"""A GPU's memory as ``nvidia-smi`` shows it: ``nvmlDeviceGetMemoryInfo`` v2, with a v1 fallback.

NVML's v1 struct (``nvmlMemory_t``: total, free, used) counts the driver's own reservation
(firmware and bookkeeping, hundreds of MiB on an H100 or H200) in ``used``. The v2 struct
(``nvmlMemory_v2_t``) reports it apart as ``reserved``, and its ``used`` is what processes
allocated, which is what ``nvidia-smi`` shows as used. So, as nvitop does, v2 is asked first
(``nvmlDeviceGetMemoryInfo(handle, nvmlMemory_v2)``) and v1 only
where the driver lacks ``nvmlDeviceGetMemoryInfo_v2`` (``NVMLError_FunctionNotFound``) or this
nvidia-ml-py has no ``nvmlMemory_v2``: then ``used`` includes the reservation and ``reserved``
is NaN. ``free`` is the same in both.

>>> reading = read_memory(session.query, pynvml, handle, 0, "gpu0_")   # doctest: +SKIP
>>> reading.used_mb, reading.reserved_mb                              # doctest: +SKIP
(4608.0, 531.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

NaN = math.nan
MIB = 2**20


@dataclass(frozen=True)
class MemoryReading:
    """One device's memory in MiB: ``used_mb`` is what processes allocated (the driver's
    reservation too where only v1 answered, see :attr:`version`), ``reserved_mb`` the driver's
    reservation (NaN from v1)."""

    used_mb: float = NaN
    total_mb: float = NaN
    free_mb: float = NaN
    reserved_mb: float = NaN
    version: int | None = None  # 2, 1, or None when neither answered


def read_memory(query: Callable[..., Any], nv: ModuleType, handle: object, index: int, prefix: str) -> MemoryReading:
    """Device ``index``'s memory through ``query`` (:meth:`whisperkit.measure.nvml.NvmlSession.query`).

    ``prefix`` is the device's column prefix (``gpu0_``). Where v2 will never answer (the
    driver lacks it, NotSupported, NoPermission) only the reserved column is marked so, and v1 is asked.
    """
    version = getattr(nv, "nvmlMemory_v2", None)
    columns = (prefix + "mem_used_mb", prefix + "mem_total_mb")
    if version is not None:
        memory = query("nvmlDeviceGetMemoryInfo_v2", handle, version, call=nv.nvmlDeviceGetMemoryInfo,
                       device=index, default=None, columns=(*columns, prefix + "mem_reserved_mb"),
                       marks=(prefix + "mem_reserved_mb",), unavailable=_V1)
        if memory is None:  # a failure this time: NaN, counted against all three columns
            return MemoryReading()
        reserved = getattr(memory, "reserved", None)  # a v1 struct from a simulated library has none
        if memory is not _V1:
            return MemoryReading(memory.used / MIB, memory.total / MIB, memory.free / MIB,
                                 NaN if reserved is None else reserved / MIB, 2 if reserved is not None else 1)
    memory = query("nvmlDeviceGetMemoryInfo", handle, device=index, default=None, columns=columns)
    if memory is None:
        return MemoryReading()
    return MemoryReading(memory.used / MIB, memory.total / MIB, memory.free / MIB, NaN, 1)


_V1 = object()  # "ask v1": what the v2 query returns where v2 will never answer
