"""The raw NVML answers benchmarks/nvml_check.py records beside whisperkit's Sampler.

:class:`RawPoller` asks NVML directly, on a thread: ``nvmlDeviceGetProcessUtilization`` every
``RAW_POLL_S`` (PIDs, sample timestamps, NotFound), and every ``SLOW_POLL_S`` the compute-process
lists (plain, v3, v2), memory v1 and v2, power, the energy counter, utilization and GPM metrics
between consecutive GPM samples. Every call is guarded: an answer is a value or the error's name
(pynvml raises plain Exceptions too, e.g. for a library version mismatch), never an exception.
:func:`process_api` summarizes the per-process answers. Needs only pynvml (through the caller).
"""

from __future__ import annotations

import os
import threading
import time

RAW_POLL_S = 0.05
SLOW_POLL_S = 0.5
MIB = 2**20
#: GPM metric ids (``NVML_GPM_METRIC_*``): SM activity, SM occupancy, any tensor activity, DRAM bandwidth
GPM_METRICS = {"sm_activity_percent": 2, "sm_occupancy_percent": 3, "tensor_activity_percent": 5, "dram_bw_percent": 10}


def memory(nv, handle) -> dict:
    """Memory v1 and v2 in MiB (``reserved`` is v2's alone; v1's ``used`` includes it)."""
    values: dict = {}
    v1 = call(nv, "nvmlDeviceGetMemoryInfo", handle)
    values["v1"] = {k: getattr(v1, k) / MIB for k in ("total", "free", "used")} if hasattr(v1, "used") else v1
    version = getattr(nv, "nvmlMemory_v2", None)
    v2 = call(nv, "nvmlDeviceGetMemoryInfo", handle, version) if version else "nvmlMemory_v2 absent"
    values["v2"] = ({k: getattr(v2, k) / MIB for k in ("total", "reserved", "free", "used")}
                    if hasattr(v2, "reserved") else (v2 if isinstance(v2, str) else "no v2 struct returned"))
    return values


class RawPoller(threading.Thread):
    """NVML's raw answers beside the Sampler: per-process utilization every RAW_POLL_S; process
    lists, memory v1/v2, power, energy and GPM every SLOW_POLL_S. ``phase`` labels each record."""

    def __init__(self, nv, index: int) -> None:
        super().__init__(daemon=True)
        self.nv, self.handle = nv, nv.nvmlDeviceGetHandleByIndex(index)
        self.phase, self.t0 = "start", time.monotonic()
        self.process_util: list[dict] = []
        self.slow: list[dict] = []
        self.gpm: list[dict] = []
        self._done = threading.Event()
        self._last_us = 0
        self._gpm_sample = None

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)

    def run(self) -> None:
        next_slow = 0.0
        while not self._done.is_set():
            now = time.monotonic() - self.t0
            self.process_util.append(self._process_util(now))
            if now >= next_slow:
                self.slow.append(self._slow(now))
                self._gpm(now)
                next_slow = now + SLOW_POLL_S
            self._done.wait(RAW_POLL_S)

    def _process_util(self, now: float) -> dict:
        record: dict = {"t": round(now, 3), "phase": self.phase, "since_us": self._last_us}
        try:
            samples = self.nv.nvmlDeviceGetProcessUtilization(self.handle, self._last_us)
        except Exception as error:  # noqa: BLE001 - NotFound, NotSupported, a version mismatch: all recorded
            record["error"] = type(error).__name__
            return record
        record["samples"] = [{"pid": s.pid, "ts_us": s.timeStamp, "sm": s.smUtil, "mem": s.memUtil} for s in samples]
        if record["samples"]:
            self._last_us = max(s["ts_us"] for s in record["samples"])
        return record

    def _slow(self, now: float) -> dict:
        nv, h = self.nv, self.handle
        record: dict = {"t": round(now, 3), "phase": self.phase, "memory": memory(nv, h),
                        "power_w": scaled(call(nv, "nvmlDeviceGetPowerUsage", h), 1e-3),
                        "energy_j": scaled(call(nv, "nvmlDeviceGetTotalEnergyConsumption", h), 1e-3),
                        "util": getattr(call(nv, "nvmlDeviceGetUtilizationRates", h), "gpu", None)}
        for name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v3",
                     "nvmlDeviceGetComputeRunningProcesses_v2"):
            listed = call(nv, name, h)
            record[name] = ([{"pid": p.pid, "used_mb": scaled(p.usedGpuMemory, 1 / MIB)} for p in listed]
                            if isinstance(listed, list) else listed)
        return record

    def _gpm(self, now: float) -> None:
        nv = self.nv
        if not hasattr(nv, "nvmlGpmSampleAlloc") or (self.gpm and "error" in self.gpm[-1] and self._gpm_sample is None):
            return
        try:
            sample = nv.nvmlGpmSampleGet(self.handle, nv.nvmlGpmSampleAlloc())
            if self._gpm_sample is not None:
                request = nv.c_nvmlGpmMetricsGet_t()
                request.version, request.numMetrics = nv.NVML_GPM_METRICS_GET_VERSION, len(GPM_METRICS)
                request.sample1, request.sample2 = self._gpm_sample, sample
                for i, metric in enumerate(GPM_METRICS.values()):
                    request.metrics[i].metricId = metric
                nv.nvmlGpmMetricsGet(request)
                self.gpm.append({"t": round(now, 3), "phase": self.phase,
                                 **{name: (request.metrics[i].value if request.metrics[i].nvmlReturn == 0
                                           else f"NVML error {request.metrics[i].nvmlReturn}")
                                    for i, name in enumerate(GPM_METRICS)}})
                nv.nvmlGpmSampleFree(self._gpm_sample)
            self._gpm_sample = sample
        except Exception as error:  # noqa: BLE001 - NotSupported before Hopper; recorded once
            self.gpm.append({"t": round(now, 3), "error": f"{type(error).__name__}: {first_line(error)}"})
            self._gpm_sample = None


def process_api(records: list[dict]) -> dict:
    """The raw per-process answers: how often samples came, NotFound gaps, which PIDs."""
    stamps = sorted({s["ts_us"] for r in records for s in r.get("samples", [])})
    spacing = [(b - a) / 1e3 for a, b in zip(stamps, stamps[1:])]
    gaps, gap_start = [], None
    for r in records:
        if r.get("error") == "NVMLError_NotFound":
            gap_start = r["t"] if gap_start is None else gap_start
        elif gap_start is not None:
            gaps.append(r["t"] - gap_start)
            gap_start = None
    pids = sorted({s["pid"] for r in records for s in r.get("samples", [])})
    errors: dict[str, int] = {}
    for r in records:
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
    return {"what": "per-process utilization API", "calls": len(records), "errors": errors, "pids_seen": pids,
            "own_pid_seen": os.getpid() in pids, "sample_spacing_ms_median": sorted(spacing)[len(spacing) // 2] if spacing else None,
            "sample_spacing_ms_max": max(spacing) if spacing else None, "longest_not_found_s": max(gaps) if gaps else None}


def call(nv, name: str, *args):
    """``nv.<name>(*args)`` through :func:`guarded`; "<name> absent" where the module lacks it."""
    function = getattr(nv, name, None)
    return guarded(function, *args) if function is not None else f"{name} absent"


def guarded(function, *args):
    """``function(*args)``, or the exception's class name (NVML raises plain Exceptions too)."""
    try:
        return function(*args)
    except Exception as error:  # noqa: BLE001 - every answer is recorded, none stops the check
        return f"{type(error).__name__}: {first_line(error)}" if str(error) else type(error).__name__


def scaled(value, factor: float):
    return value * factor if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def text(value):
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def first_line(error: BaseException) -> str:
    try:
        message = str(error).strip()
    except Exception:  # noqa: BLE001 - str() of an NVMLError asks the library
        message = ""
    return message.splitlines()[0] if message else type(error).__name__
