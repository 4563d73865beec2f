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

Errors from single queries never propagate (see :meth:`NvmlSession.query`): every exception
pynvml raises is caught there, including ``NVMLLibraryMismatchError`` (a plain ``Exception``).

- ``NVMLError_NotSupported``, ``NVMLError_FunctionNotFound``, ``NVMLError_NoPermission``,
  ``NVMLLibraryMismatchError``: the value is NaN, the (device, function) pair is never asked
  again, and its columns are marked once with the reason in :attr:`NvmlSession.column_reasons`
  (not counted as errors: on a GPU in MIG mode utilization is NotSupported every time).
- ``NVMLError_GpuIsLost``: that device's values are NaN from then on and it is not queried again;
  other devices carry on.
- any other error: NaN for that sample, and one error is counted against each affected column
  (:meth:`NvmlSession.drain_errors`).

Device indices are NVML's, which ignore ``CUDA_VISIBLE_DEVICES`` (see :mod:`whisperkit.measure.devices`).
Memory is read as :mod:`whisperkit.measure.gpu_memory` says (v2, ``reserved`` apart), per-process
utilization as :mod:`whisperkit.measure.gpu_processes` says (never a false 0), GPM as
:mod:`whisperkit.measure.gpm` says. On a GPU in MIG mode the memory (and GPM) columns are those of
the MIG instance given to :meth:`NvmlSession.sample_mig_instance` (the model's).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from whisperkit.measure.columns import gpu_column, gpu_columns
from whisperkit.measure.gpm import GpmReader
from whisperkit.measure.gpu_memory import MemoryReading, read_memory
from whisperkit.measure.gpu_processes import ProcessWatch, compute_pids, process_list_api
from whisperkit.measure.gpu_processes import pid_namespace_depth as pid_namespace_depth  # where it was before

NaN = math.nan
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


def active_users() -> int:
    """How many holders NVML has now (0 means it is shut down)."""
    return _users


def _init_reason(error: Exception) -> str:
    name = type(error).__name__
    meaning = _INIT_REASONS.get(name)
    if meaning is None:
        try:
            meaning = str(error)
        except Exception:  # str() of an unknown code asks the library, which may be absent
            meaning = f"error code {getattr(error, 'value', '?')}"
    return f"NVML unavailable: {meaning} ({name})"


#: what a permanent "no" from NVML means, by error class name (the column is marked with it once)
_UNAVAILABLE_MEANINGS = {
    "NVMLError_NotSupported": "not supported on this GPU",
    "NVMLError_FunctionNotFound": "not in this NVIDIA driver (too old for this call)",
    "NVMLError_NoPermission": "no permission (NVML needs more privileges for this value)",
    "NVMLLibraryMismatchError": "nvidia-ml-py and the NVIDIA driver disagree on this function's version",
    "AttributeError": "not in this nvidia-ml-py",
}


@dataclass
class Device:
    """One NVIDIA GPU as NVML numbers it; ``handle`` is None when it could not be opened.
    ``mig_handle`` and ``mig_uuid`` are the MIG instance sampled on a GPU in MIG mode."""

    index: int
    handle: object
    lost: bool = False
    mig_mode: bool = False
    mig_handle: object = None
    mig_uuid: str | None = None
    gpm: GpmReader | None = None


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
        #: column -> why it is NaN for good (NotSupported, NoPermission, no GPM, ...), marked once
        self.column_reasons: dict[str, str] = {}
        self._process_list = process_list_api(self._nv) if self._nv is not None else None
        self.processes = ProcessWatch(self.query, self._compute_pids)
        if self._nv is not None:
            self.devices = self._open_devices()
            if not self.devices and self.reason is None:
                self.reason = "NVML found no NVIDIA GPU"

    @property
    def available(self) -> bool:
        """True when NVML runs and shows at least one GPU."""
        return bool(self.devices)

    @property
    def process_util_reason(self) -> str | None:
        """Why per-process GPU utilization is NaN (PIDs that cannot be matched to NVML's), else None."""
        return self.processes.reason

    def __enter__(self) -> NvmlSession:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Free the GPM samples and release NVML (idempotent)."""
        if not self._closed:
            for device in self.devices:
                if device.gpm is not None:
                    device.gpm.close()
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
            device = Device(index, handle, lost=handle is None)
            devices.append(device)
            if handle is not None:
                mode = self.query("nvmlDeviceGetMigMode", handle, device=index, default=None)
                device.mig_mode = bool(mode and mode[0])
        return devices

    def sample_mig_instance(self, index: int, mig_handle: object, mig_uuid: str | None) -> None:
        """Read GPU ``index``'s memory and GPM from this MIG instance (the model's) from now on."""
        if 0 <= index < len(self.devices):
            self.devices[index].mig_handle, self.devices[index].mig_uuid = mig_handle, mig_uuid

    def query(self, func_name: str, *args: object, device: int | None = None, default: Any = NaN,
              columns: Collection[str] = (), not_found: Any = None, call: Callable[..., Any] | None = None,
              marks: Collection[str] | None = None, unavailable: Any = None) -> Any:
        """Call ``pynvml.<func_name>(*args)`` (or ``call(*args)``, named ``func_name``); on failure
        return ``default``, never raise.

        ``device`` keys the memory of permanent answers and the GpuIsLost state (None: a system
        call). ``columns`` are the timeline columns an error is counted against, ``marks`` (default:
        ``columns``) those marked with the reason of a permanent answer. ``not_found``, when given,
        is returned for ``NVMLError_NotFound`` without counting an error; ``unavailable``, when
        given, for a permanent answer (now or before) instead of ``default``.
        """
        nv = self._nv
        key = (device, func_name)
        if nv is None or (device is not None and self._is_lost(device)):
            return default
        if key in self._unsupported:
            return default if unavailable is None else unavailable
        try:
            function = call if call is not None else getattr(nv, func_name)
            return function(*args)
        except Exception as error:  # every NVMLError, NVMLLibraryMismatchError, a missing function, ctypes
            failure = error
        name = type(failure).__name__
        if name in _UNAVAILABLE_MEANINGS:
            self._unavailable(key, columns if marks is None else marks, name)
            return default if unavailable is None else unavailable
        if not isinstance(failure, nv.NVMLError):
            self._errors.extend(columns)
            return default
        return self._nvml_error(failure, key, columns, default, not_found)

    def _nvml_error(self, error: Exception, key: tuple[int | None, str], columns: Collection[str], default: Any,
                    not_found: Any) -> Any:
        nv = self._nv
        assert nv is not None
        device = key[0]
        if isinstance(error, nv.NVMLError_NotFound) and not_found is not None:
            return not_found
        if isinstance(error, nv.NVMLError_GpuIsLost) and device is not None and device < len(self.devices):
            self.devices[device].lost = True
        self._errors.extend(columns)
        return default

    def _unavailable(self, key: tuple[int | None, str], columns: Collection[str], error_name: str) -> None:
        self._unsupported.add(key)
        device, func_name = key
        mig = " in MIG mode" if device is not None and device < len(self.devices) and self.devices[device].mig_mode \
            and error_name == "NVMLError_NotSupported" else ""
        self.mark_unavailable(columns, f"{func_name}: {_UNAVAILABLE_MEANINGS[error_name]}{mig} ({error_name})")

    def mark_unavailable(self, columns: Collection[str], reason: str) -> None:
        """Say once why ``columns`` are NaN for good (a later reason for the same column is dropped)."""
        for column in columns:
            self.column_reasons.setdefault(column, reason)

    def _is_lost(self, device: int) -> bool:
        return device < len(self.devices) and self.devices[device].lost

    def _compute_pids(self, handle: object) -> list[int]:
        assert self._nv is not None
        return compute_pids(self._nv, self._process_list, handle)

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
        nv = self._nv
        if nv is None:  # a device exists only while NVML is open
            return {}
        i, h = device.index, device.handle
        prefix = gpu_column(i, "")
        util = self.query("nvmlDeviceGetUtilizationRates", h, device=i, default=None,
                          columns=(prefix + "util_percent", prefix + "mem_util_percent"))
        memory = self.memory(device)
        power_mw = self.query("nvmlDeviceGetPowerUsage", h, device=i, columns=(prefix + "power_w",))
        clock = self.query("nvmlDeviceGetClockInfo", h, nv.NVML_CLOCK_SM, device=i,
                           columns=(prefix + "sm_clock_mhz",))
        temperature = self.query("nvmlDeviceGetTemperature", h, nv.NVML_TEMPERATURE_GPU, device=i,
                                 columns=(prefix + "temperature_c",))
        energy_mj = self.query("nvmlDeviceGetTotalEnergyConsumption", h, device=i, columns=(prefix + "energy_j",))
        busy = float(util.gpu) if util is not None else NaN
        process_util = self.processes.read(i, h, pids, busy, prefix + "process_util_percent")
        return {
            prefix + "util_percent": busy,
            prefix + "mem_util_percent": float(util.memory) if util is not None else NaN,
            prefix + "mem_used_mb": memory.used_mb,
            prefix + "mem_total_mb": memory.total_mb,
            prefix + "power_w": power_mw / 1000.0,
            prefix + "sm_clock_mhz": float(clock),
            prefix + "temperature_c": float(temperature),
            prefix + "process_util_percent": process_util,
            prefix + "energy_j": energy_mj / 1000.0,
            prefix + "mem_reserved_mb": memory.reserved_mb,
            **self._gpm(device, prefix).read(),
        }

    def memory(self, device: Device) -> MemoryReading:
        """The device's memory (its MIG instance's where one is sampled), MiB; see :mod:`whisperkit.measure.gpu_memory`."""
        if self._nv is None:
            return MemoryReading()
        return read_memory(self.query, self._nv, device.mig_handle or device.handle, device.index,
                           gpu_column(device.index, ""))

    def _gpm(self, device: Device, prefix: str) -> GpmReader:
        """The device's GPM reader, started on its first read (after the MIG instance is known)."""
        if device.gpm is None:
            assert self._nv is not None
            instance, skip = None, None
            if device.mig_handle is not None:
                instance = self.query("nvmlDeviceGetGpuInstanceId", device.mig_handle, device=device.index,
                                      default=None)
            if device.mig_mode and instance is None:
                skip = "GPU in MIG mode: GPM is read per MIG instance, and none of this GPU's is the model's"
            device.gpm = GpmReader(self._nv, self.query, self.mark_unavailable, device.index, device.handle,
                                   prefix, instance, skip_reason=skip)
        return device.gpm


def gpu_inventory() -> tuple[list[dict], str | None]:
    """The NVIDIA GPUs NVML sees, and why the list is empty (None when it is not).

    Each GPU is a dict with ``index``, ``name``, ``uuid``, ``memory_total_mb``,
    ``memory_free_mb``, ``memory_reserved_mb`` (MiB, floats; reserved by the driver, NVML memory
    v2), ``driver_version`` (e.g. "550.54.15"), ``cuda_driver_version`` (the newest CUDA the
    driver supports, e.g. "12.4"), ``mig_mode`` (True on a GPU in MIG mode) and ``gpm`` (whether
    it has GPM counters: Hopper and newer). A value NVML cannot give is None (NaN for the memory sizes).

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
            memory = nv.memory(device)
            gpm = nv.query("nvmlGpmQueryDeviceSupport", h, device=i, default=None)
            gpus.append({
                "index": i,
                "name": _text(nv.query("nvmlDeviceGetName", h, device=i, default=None)),
                "uuid": _text(nv.query("nvmlDeviceGetUUID", h, device=i, default=None)),
                "memory_total_mb": memory.total_mb,
                "memory_free_mb": memory.free_mb,
                "memory_reserved_mb": memory.reserved_mb,
                "driver_version": _text(driver),
                "cuda_driver_version": cuda,
                "mig_mode": device.mig_mode,
                "gpm": bool(gpm.isSupportedDevice) if gpm is not None else None,
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
