"""The one NVML wrapper: lazy start, reference-counted shutdown, every call through :meth:`NvmlSession.query`.

``pynvml`` (from the ``nvidia-ml-py`` package) is imported inside functions, looked up in
``sys.modules`` at call time, so ``import whisperkit.measure.nvml`` costs nothing and tests can put a
fake ``pynvml`` in its place. For other processes (the sampler's own), the environment variable
``WHISPERKIT_PYNVML=module:function`` names a function that returns the module to use instead
(tests and simulators set it; see ``tests/fake_pynvml.py``).

NVML starts on the first :func:`acquire` (``nvmlInit``) and stops when the last holder calls
:func:`release` (``nvmlShutdown``). NVML counts init/shutdown pairs itself, so other libraries in
the same process that use NVML are not disturbed.

No GPU is an answer, not an exception: when ``pynvml`` is missing or ``nvmlInit`` fails, a session
has no devices and a human-readable ``reason``.

Errors from single queries never propagate (see :meth:`NvmlSession.query`):

- ``NVMLError_NotSupported`` / ``NVMLError_FunctionNotFound``: the value is NaN and the
  (device, function) pair is remembered and never asked again.
- ``NVMLError_GpuIsLost``: that device's values are NaN from then on and it is not queried again;
  other devices carry on.
- any other ``NVMLError``: NaN for that sample, and one error is logged against each affected
  column in :attr:`NvmlSession.errors`.

Device indices are NVML's, which ignore ``CUDA_VISIBLE_DEVICES`` (see :mod:`whisperkit.measure.devices`).

Per-process utilization needs this process's PIDs to be NVML's. The driver has no PID-namespace
support: inside a container NVML reports host PIDs. :attr:`NvmlSession.process_util_reason` says
why the ``gpu{i}_process_util_percent`` columns are NaN when they cannot be matched (see
:meth:`NvmlSession._pids_unmatchable`); they are never a false 0.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from whisperkit.measure.columns import gpu_column, gpu_columns

NaN = math.nan
MIB = 2**20
#: Longest period over which the driver averages utilization (1/6 s to 1 s by product), seconds.
DRIVER_PERIOD_MAX_S = 1.0
#: How often NVML's list of compute processes is read while PIDs are not yet known to match, seconds.
PID_CHECK_S = 1.0
PROC_STATUS = "/proc/self/status"
#: environment variable naming a replacement for pynvml ("module:function"), for tests and simulators
PYNVML_ENV = "WHISPERKIT_PYNVML"

_lock = threading.Lock()
_users = 0
_module: ModuleType | None = None  # the pynvml module that nvmlInit succeeded on

# nvmlInit error class name -> what it means for a person
_INIT_REASONS = {
    "NVMLError_LibraryNotFound": "NVIDIA driver library not found",
    "NVMLError_DriverNotLoaded": "NVIDIA driver is not loaded",
    "NVMLError_LibRmVersionMismatch": "NVIDIA driver and kernel module versions differ; reboot or reload the driver",
    "NVMLError_NoPermission": "no permission to use the NVIDIA driver",
    "NVMLError_FunctionNotFound": "NVIDIA driver too old for the installed nvidia-ml-py",
}


def acquire() -> tuple[ModuleType | None, str | None]:
    """Start NVML if nobody has; return ``(pynvml, None)``, or ``(None, reason)`` when unusable.

    Every successful call must be paired with one :func:`release`.
    """
    global _users, _module
    with _lock:
        if _users > 0:
            _users += 1
            return _module, None
        try:
            pynvml = _import_pynvml()
        except ImportError as error:
            return None, f"NVML unavailable: cannot import pynvml ({error}); install nvidia-ml-py"
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as error:
            return None, _init_reason(error)
        except (OSError, AttributeError) as error:  # a broken or shadowed pynvml module
            return None, f"NVML unavailable: {error} ({type(error).__name__})"
        _module, _users = pynvml, 1
        return pynvml, None


def _import_pynvml() -> ModuleType:
    """``pynvml``, or the module ``WHISPERKIT_PYNVML=module:function`` returns (see the module docstring)."""
    spec = os.environ.get(PYNVML_ENV)
    if spec:
        import importlib

        module_name, _, function = spec.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, function)() if function else module
    import pynvml

    return pynvml


def release() -> None:
    """Drop one holder; the last one shuts NVML down. Extra calls are ignored."""
    global _users, _module
    with _lock:
        if _users == 0:
            return
        _users -= 1
        if _users == 0:
            module, _module = _module, None
            if module is None:
                return
            try:
                module.nvmlShutdown()
            except module.NVMLError:
                pass


def _init_reason(error: Exception) -> str:
    name = type(error).__name__
    meaning = _INIT_REASONS.get(name)
    if meaning is None:
        try:
            meaning = str(error)
        except Exception:  # str() of an unknown code asks the library, which may be absent
            meaning = f"error code {getattr(error, 'value', '?')}"
    return f"NVML unavailable: {meaning} ({name})"


@dataclass
class _ProcessUtil:
    """Per-device state for ``nvmlDeviceGetProcessUtilization`` (timestamps in microseconds)."""

    last_seen_us: int
    value: float = NaN
    last_success_s: float | None = None  # time.monotonic() of the last call that returned samples


@dataclass
class Device:
    """One NVIDIA GPU as NVML numbers it; ``handle`` is None when it could not be opened."""

    index: int
    handle: object
    lost: bool = False
    process_util: _ProcessUtil = field(default_factory=lambda: _ProcessUtil(_now_us() - 1_000_000))


def _now_us() -> int:
    return time.time_ns() // 1000


class _NotFound:
    """Marker returned by :meth:`NvmlSession.query` for ``NVMLError_NotFound`` when asked to."""


NOT_FOUND = _NotFound()


class NvmlSession:
    """Holds NVML open for its lifetime and reads GPU metrics; use as a context manager.

    >>> with NvmlSession() as nv:                      # doctest: +SKIP
    ...     nv.reason or nv.read(pids={os.getpid()})
    """

    def __init__(self) -> None:
        self._nv, self.reason = acquire()
        self._closed = self._nv is None
        self._unsupported: set[tuple[int | None, str]] = set()
        self._errors: list[str] = []
        self.devices: list[Device] = []
        #: why per-process GPU utilization is NaN (PIDs that cannot be matched to NVML's), else None
        self.process_util_reason: str | None = None
        self._pids_matched = False  # a watched PID was seen among NVML's processes
        self._nested_pid_namespace = pid_namespace_depth() > 1
        self._pid_checked_at: dict[int, float] = {}  # device index -> time.monotonic() of the last check
        if self._nv is not None:
            self.devices = self._open_devices()
            if not self.devices and self.reason is None:
                self.reason = "NVML found no NVIDIA GPU"

    @property
    def available(self) -> bool:
        """True when NVML runs and shows at least one GPU."""
        return bool(self.devices)

    def __enter__(self) -> NvmlSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Release NVML (idempotent)."""
        if not self._closed:
            self._closed = True
            release()

    def _open_devices(self) -> list[Device]:
        count = self.query("nvmlDeviceGetCount", default=None)
        if count is None:
            self.reason = "NVML could not count the GPUs (nvmlDeviceGetCount failed)"
            return []
        devices = []
        for index in range(int(count)):
            handle = self.query("nvmlDeviceGetHandleByIndex", index, default=None,
                                columns=gpu_columns(index))
            devices.append(Device(index, handle, lost=handle is None))
        return devices

    def query(self, func_name: str, *args: object, device: int | None = None, default: Any = NaN,
              columns: Collection[str] = (), not_found: Any = None) -> Any:
        """Call ``pynvml.<func_name>(*args)``; on failure return ``default``, never raise.

        ``device`` keys the NotSupported memory and the GpuIsLost state (None: a system call).
        ``columns`` are the timeline columns an error is counted against. ``not_found``, when
        given, is returned for ``NVMLError_NotFound`` without counting an error.
        """
        nv = self._nv
        key = (device, func_name)
        if nv is None or key in self._unsupported or (device is not None and self._is_lost(device)):
            return default
        try:
            return getattr(nv, func_name)(*args)
        except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound, AttributeError):
            self._unsupported.add(key)
            return default
        except nv.NVMLError_NotFound:
            if not_found is not None:
                return not_found
            self._errors.extend(columns)
            return default
        except nv.NVMLError_GpuIsLost:
            if device is not None and device < len(self.devices):
                self.devices[device].lost = True
            self._errors.extend(columns)
            return default
        except nv.NVMLError:
            self._errors.extend(columns)
            return default

    def _is_lost(self, device: int) -> bool:
        return device < len(self.devices) and self.devices[device].lost

    def drain_errors(self) -> list[str]:
        """Columns that had a failed query since the last call (one entry per failure)."""
        errors, self._errors = self._errors, []
        return errors

    def column_names(self) -> list[str]:
        """Timeline columns :meth:`read` fills, in order."""
        return [name for d in self.devices for name in gpu_columns(d.index)]

    def read(self, pids: Collection[int]) -> dict[str, float]:
        """One sample of every device: a dict of :meth:`column_names` to floats (NaN if unknown).

        ``pids`` are the processes whose ``smUtil`` is summed into ``gpu{i}_process_util_percent``.
        """
        values: dict[str, float] = {}
        for device in self.devices:
            values.update(self._read_device(device, pids))
        return values

    def _read_device(self, device: Device, pids: Collection[int]) -> dict[str, float]:
        i, h = device.index, device.handle
        prefix = gpu_column(i, "")
        util = self.query("nvmlDeviceGetUtilizationRates", h, device=i, default=None,
                          columns=(prefix + "util_percent", prefix + "mem_util_percent"))
        memory = self.query("nvmlDeviceGetMemoryInfo", h, device=i, default=None,
                            columns=(prefix + "mem_used_mb", prefix + "mem_total_mb"))
        power_mw = self.query("nvmlDeviceGetPowerUsage", h, device=i, columns=(prefix + "power_w",))
        nv = self._nv
        if nv is None:  # a device exists only while NVML is open
            return {}
        clock = self.query("nvmlDeviceGetClockInfo", h, nv.NVML_CLOCK_SM, device=i,
                           columns=(prefix + "sm_clock_mhz",))
        temperature = self.query("nvmlDeviceGetTemperature", h, nv.NVML_TEMPERATURE_GPU, device=i,
                                 columns=(prefix + "temperature_c",))
        energy_mj = self.query("nvmlDeviceGetTotalEnergyConsumption", h, device=i, columns=(prefix + "energy_j",))
        return {
            prefix + "util_percent": float(util.gpu) if util is not None else NaN,
            prefix + "mem_util_percent": float(util.memory) if util is not None else NaN,
            prefix + "mem_used_mb": memory.used / MIB if memory is not None else NaN,
            prefix + "mem_total_mb": memory.total / MIB if memory is not None else NaN,
            prefix + "power_w": power_mw / 1000.0,
            prefix + "sm_clock_mhz": float(clock),
            prefix + "temperature_c": float(temperature),
            prefix + "process_util_percent": self._process_util(device, pids, util.gpu if util is not None else NaN),
            prefix + "energy_j": energy_mj / 1000.0,
        }

    def _process_util(self, device: Device, pids: Collection[int], busy_percent: float = NaN) -> float:
        """Sum of the latest ``smUtil`` of ``pids`` on ``device``, percent (NaN where unknown).

        ``nvmlDeviceGetProcessUtilization(handle, t)`` returns the samples newer than ``t`` (µs)
        for processes that ran kernels; ``NVMLError_NotFound`` means there is none. Our choice:

        - new samples: the sum over ``pids`` of each one's newest ``smUtil`` (0 if none of them ran);
        - NotFound within :data:`DRIVER_PERIOD_MAX_S` of the last samples: the previous value again
          (the driver has not finished its next period, as with utilization rates);
        - NotFound for longer: 0 if the device has returned samples before (nothing ran), else NaN
          (we cannot tell "idle" from "this device does not report per-process samples");
        - NaN always once :meth:`_pids_unmatchable` has a reason (kept in :attr:`process_util_reason`).
        """
        if self._pids_unmatchable(device, pids, busy_percent):
            return NaN
        state = device.process_util
        samples = self.query("nvmlDeviceGetProcessUtilization", device.handle, state.last_seen_us,
                             device=device.index, default=None, not_found=NOT_FOUND,
                             columns=(gpu_column(device.index, "process_util_percent"),))
        now = time.monotonic()
        if samples is None:
            return NaN
        if samples is NOT_FOUND:
            if state.last_success_s is None:
                return NaN
            if now - state.last_success_s <= DRIVER_PERIOD_MAX_S:
                return state.value
            return 0.0
        newest: dict[int, tuple[int, int]] = {}  # pid -> (timeStamp, smUtil)
        for sample in samples:
            state.last_seen_us = max(state.last_seen_us, int(sample.timeStamp))
            if sample.pid in pids and sample.timeStamp >= newest.get(sample.pid, (-1, 0))[0]:
                newest[sample.pid] = (int(sample.timeStamp), int(sample.smUtil))
        if newest:
            self._pids_matched = True
        state.value = float(sum(sm for _, sm in newest.values()))
        state.last_success_s = now
        return state.value


    def _pids_unmatchable(self, device: Device, pids: Collection[int], busy_percent: float) -> bool:
        """True when the watched PIDs cannot be matched to NVML's; the reason goes to
        :attr:`process_util_reason`. Once a watched PID has been seen among NVML's processes they
        match. Until then, at most every :data:`PID_CHECK_S`, NVML's compute processes are read:

        - this process is in a nested PID namespace (``NSpid`` in ``/proc/self/status`` has more
          than one entry, as in Docker or Kubernetes) and none of NVML's PIDs is a watched one;
        - the GPU is busy and NVML lists compute processes, none of which exists here: NVML's PIDs
          are another namespace's.
        """
        if self.process_util_reason is not None:
            return True
        if self._pids_matched:
            return False
        now = time.monotonic()
        if now - self._pid_checked_at.get(device.index, -math.inf) < PID_CHECK_S:
            return False
        self._pid_checked_at[device.index] = now
        listed = self.query("nvmlDeviceGetComputeRunningProcesses", device.handle, device=device.index,
                            default=None, not_found=[])
        nvml_pids = {int(p.pid) for p in listed or ()}
        if nvml_pids & set(pids):
            self._pids_matched = True
            return False
        if self._nested_pid_namespace:
            self.process_util_reason = _NAMESPACE_REASON
            return True
        if nvml_pids and busy_percent > 0 and not any(os.path.exists(f"/proc/{pid}") for pid in nvml_pids):
            self.process_util_reason = (f"NVML's compute processes on GPU {device.index} ({', '.join(map(str, sorted(nvml_pids)[:4]))}) "
                                        "do not exist in this PID namespace: NVML reports another namespace's "
                                        "process ids, which cannot be matched to this process's")
            return True
        return False


_NAMESPACE_REASON = ("this process runs in its own PID namespace (a container): NVML reports host process ids, "
                     "which cannot be matched to this process's, so per-process GPU utilization is unknown")


def pid_namespace_depth(path: str | None = None) -> int:
    """How many PID namespaces this process is in (the ``NSpid`` entries of ``/proc/self/status``; 1 outside containers)."""
    try:
        with open(path or PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return max(1, len(line.split()) - 1)
    except OSError:
        pass
    return 1


def gpu_inventory() -> tuple[list[dict], str | None]:
    """The NVIDIA GPUs NVML sees, and why the list is empty (None when it is not).

    Each GPU is a dict with ``index``, ``name``, ``uuid``, ``memory_total_mb``,
    ``memory_free_mb`` (MiB, floats), ``driver_version`` (e.g. "550.54.15") and
    ``cuda_driver_version`` (the newest CUDA the driver supports, e.g. "12.4").
    A value NVML cannot give is None (NaN for the memory sizes).

    >>> gpus, reason = gpu_inventory()   # doctest: +SKIP
    >>> gpus or reason                   # doctest: +SKIP
    'NVML unavailable: NVIDIA driver library not found (NVMLError_LibraryNotFound)'
    """
    with NvmlSession() as nv:
        if not nv.available:
            return [], nv.reason
        driver = nv.query("nvmlSystemGetDriverVersion", default=None)
        cuda = _cuda_version(nv.query("nvmlSystemGetCudaDriverVersion", default=None))
        gpus = []
        for device in nv.devices:
            i, h = device.index, device.handle
            memory = nv.query("nvmlDeviceGetMemoryInfo", h, device=i, default=None)
            gpus.append({
                "index": i,
                "name": _text(nv.query("nvmlDeviceGetName", h, device=i, default=None)),
                "uuid": _text(nv.query("nvmlDeviceGetUUID", h, device=i, default=None)),
                "memory_total_mb": memory.total / MIB if memory is not None else NaN,
                "memory_free_mb": memory.free / MIB if memory is not None else NaN,
                "driver_version": _text(driver),
                "cuda_driver_version": cuda,
            })
        return gpus, None


def _cuda_version(code: int | None) -> str | None:
    """NVML's CUDA version integer (12040) as "12.4"."""
    if code is None:
        return None
    return f"{code // 1000}.{code % 1000 // 10}"


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
