"""Which processes run on a GPU, and how much of it the watched ones use.

Process lists
-------------
``nvmlDeviceGetComputeRunningProcesses`` fills an array of structs whose layout depends on the
driver, not on the function's name: nvidia-ml-py 13 calls ``_v3`` with a 4-field struct (pid,
usedGpuMemory, gpuInstanceId, computeInstanceId), but the R535/R545 drivers' ``_v3`` writes a
5-field one (with ``usedGpuCcProtectedMemory``), so every PID after the first is read from the
wrong offset (nvitop issue #75); a driver without ``_v3`` makes nvidia-ml-py raise
``NVMLLibraryMismatchError``, a plain ``Exception``. :func:`process_list_api` chooses the
function and the struct as nvitop does, from the symbols the driver exports:

- ``_v3`` with the 5-field struct where the driver has ``nvmlDeviceGetConfComputeMemSizeInfo``
  but not ``nvmlDeviceGetRunningProcessDetailList`` (R535/R545), else ``_v3`` with 4 fields;
- ``_v2`` with 4 fields where there is no ``_v3``; the unversioned function with 2 fields where
  there is neither.

Per-process utilization
-----------------------
:class:`ProcessWatch` asks ``nvmlDeviceGetProcessUtilization`` for the samples of the last
:data:`LOOKBACK_S` seconds on every call, as nvitop does (NVML's longest sample period is 1 s),
and sums the newest ``smUtil`` of each watched PID. A watched PID with no sample in that second
ran no kernel for a whole period: 0. The value is NaN (never a 0 that only means "no new
sample", or "not our PIDs") until it can be trusted:

- the device has returned per-process samples at least once (else it may not report them), and
- the watched PIDs are NVML's: this process is in the host's PID namespace
  (:func:`pid_namespace`: the inode of ``/proc/self/ns/pid`` is the initial namespace's), or a
  watched PID has been seen among NVML's processes. The NVIDIA driver has no PID-namespace
  support, so inside a container NVML reports host PIDs, which may happen to exist in the
  container too; only a match tells.
"""

from __future__ import annotations

import ctypes
import math
import os
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

NaN = math.nan
#: per-process samples are asked for over this many past seconds on every call (NVML's longest period)
LOOKBACK_S = 1.0
#: until a watched PID is matched, NVML's compute processes are listed at most this often, seconds
PID_CHECK_S = 1.0
#: the inode of the initial (host's) PID namespace: Linux's PROC_PID_INIT_INO, fixed since 3.8
HOST_PID_NAMESPACE_INODE = 0xEFFFFFFC
PID_NAMESPACE_PATH = "/proc/self/ns/pid"
PROC_STATUS = "/proc/self/status"
NVML_SUCCESS = 0
NVML_ERROR_INSUFFICIENT_SIZE = 7
PROCESS_LIST = "nvmlDeviceGetComputeRunningProcesses"


class ProcessInfoV1(ctypes.Structure):
    """``nvmlProcessInfo_v1_t``: the unversioned function's entry."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


class ProcessInfoV2(ctypes.Structure):
    """``nvmlProcessInfo_v2_t``: ``_v2``'s entry, and ``_v3``'s on drivers other than R535/R545."""

    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


class ProcessInfoV3(ctypes.Structure):
    """The 5-field ``nvmlProcessInfo_v3_t`` of the R535/R545 drivers' ``_v3``."""

    _fields_ = [*ProcessInfoV2._fields_, ("usedGpuCcProtectedMemory", ctypes.c_ulonglong)]


@dataclass(frozen=True)
class ProcessListApi:
    """The driver symbol to call for compute processes and the struct it fills (see the module docstring)."""

    symbol: str
    struct: type[ctypes.Structure]


def process_list_api(nv: ModuleType) -> ProcessListApi | None:
    """The process-list function and struct this driver needs, or None where no symbol can be
    looked up (a pynvml without ``_nvmlGetFunctionPointer``, a simulated library): pynvml's own
    function is used then."""
    lookup = getattr(nv, "_nvmlGetFunctionPointer", None)
    if lookup is None:
        return None

    def has(symbol: str) -> bool:
        try:
            lookup(symbol)
        except Exception:  # NVMLError_FunctionNotFound (or an unloaded library): not there
            return False
        return True

    if has(PROCESS_LIST + "_v3"):
        r535 = has("nvmlDeviceGetConfComputeMemSizeInfo") and not has("nvmlDeviceGetRunningProcessDetailList")
        return ProcessListApi(PROCESS_LIST + "_v3", ProcessInfoV3 if r535 else ProcessInfoV2)
    if has(PROCESS_LIST + "_v2"):
        return ProcessListApi(PROCESS_LIST + "_v2", ProcessInfoV2)
    if has(PROCESS_LIST):
        return ProcessListApi(PROCESS_LIST, ProcessInfoV1)
    return None  # nothing can be looked up (a patched or simulated library): the module's own function


def compute_pids(nv: ModuleType, api: ProcessListApi | None, handle: object) -> list[int]:
    """The PIDs with a compute context on ``handle`` (NVML's numbering); raises pynvml's errors."""
    if api is None:
        return [int(p.pid) for p in nv.nvmlDeviceGetComputeRunningProcesses(handle)]
    function = nv._nvmlGetFunctionPointer(api.symbol)
    count = ctypes.c_uint(0)
    result = function(handle, ctypes.byref(count), None)
    if result == NVML_SUCCESS:
        return []
    if result != NVML_ERROR_INSUFFICIENT_SIZE:
        raise nv.NVMLError(result)
    count.value = count.value * 2 + 5  # room for processes that start meanwhile
    entries = (api.struct * count.value)()
    result = function(handle, ctypes.byref(count), entries)
    if result != NVML_SUCCESS:
        raise nv.NVMLError(result)
    return [int(entries[i].pid) for i in range(min(count.value, len(entries)))]


def pid_namespace(path: str | None = None) -> str:
    """``"host"`` when this process is in the initial PID namespace, ``"nested"`` in another one
    (a container's), from the inode of ``/proc/self/ns/pid``. Where that cannot be read (not
    Linux), ``"nested"`` if ``NSpid`` in ``/proc/self/status`` lists several PIDs, else ``"host"``."""
    try:
        inode = os.stat(path or PID_NAMESPACE_PATH).st_ino
    except OSError:
        return "nested" if pid_namespace_depth() > 1 else "host"
    return "host" if inode == HOST_PID_NAMESPACE_INODE else "nested"


def pid_namespace_depth(path: str | None = None) -> int:
    """How many PID namespaces ``/proc/self/status``'s ``NSpid`` shows (1 where it cannot be read).
    Inside a container whose ``/proc`` is its own it shows 1: see :func:`pid_namespace`."""
    try:
        with open(path or PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return max(1, len(line.split()) - 1)
    except OSError:
        pass
    return 1


NAMESPACE_REASON = ("this process runs in its own PID namespace (a container) and none of NVML's processes is one "
                    "of the watched PIDs: NVML reports host process ids, which cannot be matched to this "
                    "process's, so per-process GPU utilization is unknown")


@dataclass
class ProcessWatch:
    """Per-process utilization of the watched PIDs on every device of one NVML session.

    ``query`` is :meth:`whisperkit.measure.nvml.NvmlSession.query`; ``list_pids(handle)`` lists NVML's
    compute processes. :attr:`reason` says why the values are NaN, while it knows (else None).
    """

    query: Callable[..., Any]
    list_pids: Callable[[object], list[int]]
    namespace: str = field(default_factory=lambda: pid_namespace())
    matched: bool = False  # a watched PID was seen among NVML's processes
    reason: str | None = None
    _reported: set[int] = field(default_factory=set)  # devices that returned per-process samples
    _checked_at: dict[int, float] = field(default_factory=dict)  # device -> time.monotonic() of its last listing

    def read(self, index: int, handle: object, pids: Collection[int], busy_percent: float, column: str) -> float:
        """The sum of the newest ``smUtil`` of ``pids`` on device ``index``, percent; NaN where untrusted."""
        self._check_pids(index, handle, pids, busy_percent)
        since_us = time.time_ns() // 1000 - int(LOOKBACK_S * 1e6)
        samples = self.query("nvmlDeviceGetProcessUtilization", handle, since_us, device=index, default=None,
                             not_found=[], columns=(column,))
        if samples is None:
            return NaN
        newest: dict[int, tuple[int, int]] = {}  # pid -> (timeStamp, smUtil)
        for sample in samples:
            self._reported.add(index)
            stamp = int(sample.timeStamp)
            if sample.pid in pids and stamp >= newest.get(sample.pid, (-1, 0))[0]:
                newest[sample.pid] = (stamp, int(sample.smUtil))
        if newest:
            self._match()
        if index not in self._reported or not (self.matched or self.namespace == "host") or self.reason:
            return NaN
        return float(sum(sm for _, sm in newest.values()))

    def _match(self) -> None:
        self.matched, self.reason = True, None

    def _check_pids(self, index: int, handle: object, pids: Collection[int], busy_percent: float) -> None:
        """Until a watched PID is matched, list NVML's compute processes at most every :data:`PID_CHECK_S`
        and say why values cannot be trusted: another namespace's PIDs (inside a container), or, in
        the host's namespace, a busy GPU whose processes do not exist here."""
        now = time.monotonic()
        if self.matched or now - self._checked_at.get(index, -math.inf) < PID_CHECK_S:
            return
        self._checked_at[index] = now
        listed = self.query(PROCESS_LIST, handle, call=self.list_pids, device=index, default=None, not_found=[])
        nvml_pids = set(listed or ())
        if nvml_pids & set(pids):
            self._match()
        elif nvml_pids and self.namespace != "host":
            self.reason = NAMESPACE_REASON
        elif nvml_pids and busy_percent > 0 and not any(os.path.exists(f"/proc/{pid}") for pid in nvml_pids):
            shown = ", ".join(map(str, sorted(nvml_pids)[:4]))
            self.reason = (f"NVML's compute processes on GPU {index} ({shown}) do not exist in this PID namespace: "
                           "NVML reports another namespace's process ids, which cannot be matched to this process's")
