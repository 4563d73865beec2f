"""Check whisperkit's NVML measurements against a known GPU load made with PyTorch; one JSON report.

    PYTHONPATH=.carry python3 benchmarks/nvml_check.py        # writes $OUT/nvml_check.json (or ./)

For a GPU machine where ctranslate2 cannot run (CUDA 13 only, say) but PyTorch can: it needs only
``whisperkit.measure``, ``pynvml`` (nvidia-ml-py), ``psutil``, ``pandas`` and ``torch``. Steps, each
guarded (a step that fails is recorded with its error and the others go on):

1. ``environment``: versions (torch, its CUDA, driver, NVML), this process's PID and PID namespace
   (``/proc/self/ns/pid`` inode, ``NSpid``), ``CUDA_VISIBLE_DEVICES``.
2. ``nvml_devices``: every NVML GPU: name, UUID, PCI bus id, memory v1 and v2, MIG mode, GPM support.
3. ``torch_devices``: PyTorch's devices (name, UUID, PCI bus id) matched to NVML by PCI bus id,
   beside whisperkit's own answer (:func:`whisperkit.measure.devices.model_gpu`).
4. ``visible_devices``: the same in child processes under several ``CUDA_VISIBLE_DEVICES`` values.
5. ``known_load``: whisperkit's Sampler at 10 Hz over idle (3 s), an allocation of ``ALLOC_MIB``
   held 3 s, ``MATMUL_S`` seconds of float16 matmuls, idle (3 s); beside it, the raw NVML answers
   every 50 ms: ``nvmlDeviceGetProcessUtilization`` (PIDs, sample timestamps, NotFound), and every
   0.5 s the compute-process lists (v3, v2), memory v1 and v2, power, the energy counter and GPM.
6. ``findings``: what the load should show against what was read (memory of the allocation, busy
   and idle utilization, v1 used - v2 used against v2 reserved, energy against mean power x time,
   per-process samples: spacing, NotFound gaps, whether this PID was seen).

Without torch, or where PyTorch sees no CUDA device, or NVML cannot start, it refuses in one line
(exit 2, with a report saying why). Exit 0 when every step ran, 1 when one failed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INTERVAL_S = 0.1
IDLE_S = 3.0
ALLOC_MIB = 4096
HOLD_S = 3.0
MATMUL_S = 6.0
MATMUL_N = 8192
RAW_POLL_S = 0.05
SLOW_POLL_S = 0.5
CHILD_TIMEOUT_S = 90
MIB = 2**20
GPM_METRICS = {"sm_activity_percent": 2, "sm_occupancy_percent": 3, "tensor_activity_percent": 5, "dram_bw_percent": 10}


def main() -> int:
    out_dir = os.environ.get("OUT") or os.getcwd()
    report: dict = {"script": "nvml_check", "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}
    torch, refusal = import_torch()
    nv = None
    if refusal is None:
        from whisperkit.measure.nvml import acquire

        nv, refusal = acquire()
    if refusal is not None:
        report["refused"] = refusal
        print(f"nvml_check: {refusal}", file=sys.stderr)
        write(report, out_dir)
        return 2
    try:
        run_steps(report, torch, nv)
    finally:
        from whisperkit.measure.nvml import release

        release()
        report["failed_steps"] = [name for name, step in report["steps"].items() if not step["ok"]]
        write(report, out_dir)
    failed = report["failed_steps"]
    print(f"nvml_check: {len(report['steps']) - len(failed)} of {len(report['steps'])} steps ran"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def import_torch():
    """``(torch, None)``, or ``(None, why it cannot be used)``."""
    try:
        import torch
    except ImportError as error:
        return None, f"needs PyTorch with CUDA: cannot import torch ({error})"
    try:
        if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
            return None, (f"PyTorch {getattr(torch, '__version__', '?')} (CUDA {getattr(torch.version, 'cuda', None)}) "
                          "sees no CUDA device: run this on a GPU machine")
    except Exception as error:  # noqa: BLE001 - a broken CUDA install raises many kinds
        return None, f"PyTorch cannot start CUDA ({type(error).__name__}: {first_line(error)})"
    return torch, None


def step(report: dict, name: str, function, *args):
    """Run one step; record its result or its error. Returns the result (None on failure)."""
    started = time.monotonic()
    try:
        result = function(*args)
    except Exception as error:  # noqa: BLE001 - one failed step must not lose the others
        report["steps"][name] = {"ok": False, "error": f"{type(error).__name__}: {first_line(error)}",
                                 "traceback": traceback.format_exc(), "seconds": time.monotonic() - started}
        return None
    report["steps"][name] = {"ok": True, "result": result, "seconds": round(time.monotonic() - started, 3)}
    return result


def run_steps(report: dict, torch, nv) -> None:
    step(report, "environment", environment, torch, nv)
    devices = step(report, "nvml_devices", nvml_devices, nv) or []
    mapping = step(report, "torch_devices", torch_devices, torch, devices) or []
    step(report, "visible_devices", visible_devices, devices)
    index = next((m["nvml_index"] for m in mapping if m.get("torch_index") == 0 and m.get("nvml_index") is not None), 0)
    load = step(report, "known_load", known_load, torch, nv, index)
    if load is not None:
        step(report, "findings", findings, load, index)


def environment(torch, nv) -> dict:
    from whisperkit.measure.nvml import pid_namespace_depth

    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = None
    return {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": getattr(torch, "__version__", None), "torch_cuda": getattr(torch.version, "cuda", None),
        "driver": text(call(nv, "nvmlSystemGetDriverVersion")),
        "cuda_driver": call(nv, "nvmlSystemGetCudaDriverVersion"),
        "nvml": text(call(nv, "nvmlSystemGetNVMLVersion")),
        "pid": os.getpid(), "pid_namespace_inode": namespace, "pid_namespace_depth": pid_namespace_depth(),
        # 4026531836 is the host's initial PID namespace inode on Linux; anything else is a container's
        "host_pid_namespace": namespace == 4026531836,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
    }


def nvml_devices(nv) -> list[dict]:
    devices = []
    for index in range(nv.nvmlDeviceGetCount()):
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        pci = call(nv, "nvmlDeviceGetPciInfo", handle)
        mig = call(nv, "nvmlDeviceGetMigMode", handle)
        gpm = call(nv, "nvmlGpmQueryDeviceSupport", handle)
        devices.append({
            "index": index, "name": text(call(nv, "nvmlDeviceGetName", handle)), "uuid": text(call(nv, "nvmlDeviceGetUUID", handle)),
            "pci_bus_id": text(pci.busId) if hasattr(pci, "busId") else pci,
            "memory": memory(nv, handle),
            "mig_mode": list(mig) if isinstance(mig, (list, tuple)) else mig,
            "max_mig_devices": call(nv, "nvmlDeviceGetMaxMigDeviceCount", handle),
            "gpm_supported": bool(gpm.isSupportedDevice) if hasattr(gpm, "isSupportedDevice") else gpm,
            "compute_capability": call(nv, "nvmlDeviceGetCudaComputeCapability", handle),
        })
    return devices


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


def torch_devices(torch, nvml: list[dict]) -> list[dict]:
    from whisperkit.measure.devices import model_gpu, normal_bus_id

    by_bus = {normal_bus_id(d["pci_bus_id"]): d["index"] for d in nvml if isinstance(d.get("pci_bus_id"), str)}
    mapping = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        bus = torch_bus_id(props)
        mapping.append({"torch_index": i, "name": props.name, "total_mb": props.total_memory / MIB,
                        "uuid": str(getattr(props, "uuid", None)), "pci_bus_id": bus,
                        "nvml_index": by_bus.get(normal_bus_id(bus)) if bus else None,
                        "whisperkit_model_gpu": guarded(lambda i=i: model_gpu(i).to_dict())})
    return mapping


def torch_bus_id(props) -> str | None:
    parts = [getattr(props, name, None) for name in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    return None if None in parts else f"{parts[0]:08X}:{parts[1]:02X}:{parts[2]:02X}.0"


CHILD = """import json, torch
from whisperkit.measure.devices import model_gpu
out = {"torch_count": torch.cuda.device_count()}
if out["torch_count"]:
    p = torch.cuda.get_device_properties(0)
    out.update(torch_0=p.name, torch_0_uuid=str(getattr(p, "uuid", None)), whisperkit_model_gpu_0=model_gpu(0).to_dict())
print(json.dumps(out))
"""


def visible_devices(nvml: list[dict]) -> dict:
    """``CUDA_VISIBLE_DEVICES`` settings, each in a fresh process: what torch and whisperkit then see."""
    settings: list[str | None] = [None, "", "0", str(len(nvml))]
    if nvml and isinstance(nvml[0].get("uuid"), str):
        settings += [nvml[0]["uuid"], nvml[0]["uuid"][:12]]
    if len(nvml) > 1:
        settings.append(f"{len(nvml) - 1},0")
    results = {}
    for value in settings:
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        if value is not None:
            env["CUDA_VISIBLE_DEVICES"] = value
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
        try:
            done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            results[repr(value)] = json.loads(line) if done.returncode == 0 and line else {
                "error": f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}"}
        except (subprocess.TimeoutExpired, OSError, ValueError) as error:
            results[repr(value)] = {"error": f"{type(error).__name__}: {first_line(error)}"}
    return results


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
                                 **{name: request.metrics[i].value for i, name in enumerate(GPM_METRICS)}})
                nv.nvmlGpmSampleFree(self._gpm_sample)
            self._gpm_sample = sample
        except Exception as error:  # noqa: BLE001 - NotSupported before Hopper; recorded once
            self.gpm.append({"t": round(now, 3), "error": f"{type(error).__name__}: {first_line(error)}"})
            self._gpm_sample = None


def known_load(torch, nv, index: int) -> dict:
    """The load, phase by phase, with the Sampler and the raw poller running beside it."""
    from whisperkit.measure.sampler import Sampler

    device = "cuda:0"
    torch.zeros(1, device=device)  # the CUDA context exists before the idle baseline
    torch.cuda.synchronize()
    poller = RawPoller(nv, index)
    phases: list[dict] = []
    matmuls = 0
    with Sampler(interval=INTERVAL_S) as sampler:
        poller.start()

        def phase(label: str) -> None:
            poller.phase = label
            sampler.mark(label)
            phases.append({"label": label, "t": round(time.monotonic() - poller.t0, 3)})

        try:
            phase("idle")
            time.sleep(IDLE_S)
            phase("alloc")
            block = torch.ones(ALLOC_MIB * MIB, dtype=torch.uint8, device=device)
            torch.cuda.synchronize()
            allocated_mb = torch.cuda.memory_allocated(0) / MIB
            time.sleep(HOLD_S)
            del block
            torch.cuda.empty_cache()
            phase("matmul")
            a = torch.randn(MATMUL_N, MATMUL_N, device=device, dtype=torch.float16)
            b = torch.randn(MATMUL_N, MATMUL_N, device=device, dtype=torch.float16)
            started = time.monotonic()
            while time.monotonic() - started < MATMUL_S:
                for _ in range(10):
                    a @ b
                torch.cuda.synchronize()
                matmuls += 10
            matmul_s = time.monotonic() - started
            del a, b
            torch.cuda.empty_cache()
            phase("idle after")
            time.sleep(IDLE_S)
        finally:
            poller.stop()
    timeline = sampler.timeline
    columns = [c for c in timeline.columns if c.startswith(f"gpu{index}_") or not c.startswith("gpu")]
    summary = sampler.summary()
    return {
        "nvml_index": index, "phases": phases, "allocated_mb": allocated_mb, "matmuls": matmuls, "matmul_s": matmul_s,
        "matmul_tflops": 2 * MATMUL_N**3 * matmuls / matmul_s / 1e12,
        "sampler": {"gpu_available": sampler.gpu_available, "gpu_unavailable_reason": sampler.gpu_unavailable_reason,
                    "process_gpu_unavailable_reason": sampler.process_gpu_unavailable_reason, "errors": sampler.errors,
                    "marks": sampler.marks.to_dict(orient="list"),
                    "timeline": json.loads(timeline[columns].to_json(orient="split")),
                    "summary": json.loads(summary.reset_index().to_json(orient="records"))},
        "raw": {"process_util": poller.process_util, "slow": poller.slow, "gpm": poller.gpm},
    }


def findings(load: dict, index: int) -> list[dict]:
    """What the known load should show, against what NVML and the Sampler read."""
    import pandas as pd

    split = load["sampler"]["timeline"]
    timeline = pd.DataFrame(split["data"], columns=split["columns"])
    marks = load["sampler"]["marks"]
    bounds = list(zip(marks["label"], marks["time_s"], [*marks["time_s"][1:], math.inf]))

    def median(label: str, metric: str) -> float:
        column = f"gpu{index}_{metric}"
        for name, start, end in bounds:
            if name == label and column in timeline:
                values = timeline[(timeline["time_s"] >= start) & (timeline["time_s"] < end)][column].dropna()
                return float(values.median()) if len(values) else math.nan
        return math.nan

    out = [
        finding("allocation seen in NVML memory (MiB)", ALLOC_MIB, median("alloc", "mem_used_mb") - median("idle", "mem_used_mb"),
                lambda m: abs(m - ALLOC_MIB) <= 0.05 * ALLOC_MIB + 64),
        finding("utilization during matmuls (%)", ">= 90", median("matmul", "util_percent"), lambda m: m >= 90),
        finding("utilization when idle (%)", "<= 5", median("idle", "util_percent"), lambda m: m <= 5),
        finding("per-process utilization during matmuls (%)", "> 0", median("matmul", "process_util_percent"), lambda m: m > 0),
    ]
    slow = [r for r in load["raw"]["slow"] if isinstance(r["memory"].get("v1"), dict)]
    both = [r for r in slow if isinstance(r["memory"].get("v2"), dict)]
    if both:
        r = both[-1]["memory"]
        out.append(finding("v1 used - v2 used against v2 reserved (MiB)", r["v2"]["reserved"], r["v1"]["used"] - r["v2"]["used"],
                           lambda m: abs(m - r["v2"]["reserved"]) <= 2))
    energy = [(r["t"], r["energy_j"], r["power_w"]) for r in load["raw"]["slow"] if r["phase"] == "matmul"
              and isinstance(r["energy_j"], float) and isinstance(r["power_w"], float)]
    if len(energy) >= 3:
        counted = energy[-1][1] - energy[0][1]
        integrated = sum((t2 - t1) * (p1 + p2) / 2 for (t1, _, p1), (t2, _, p2) in zip(energy, energy[1:]))
        out.append(finding("energy counter against mean power x time in the matmuls (J)", round(integrated, 1), counted,
                           lambda m: integrated > 0 and abs(m - integrated) <= 0.15 * integrated))
    out.append(process_api(load["raw"]["process_util"]))
    return out


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


def finding(what: str, expected, measured: float, ok) -> dict:
    value = None if measured is None or (isinstance(measured, float) and math.isnan(measured)) else measured
    return {"what": what, "expected": expected, "measured": value, "as_expected": None if value is None else bool(ok(value))}


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


def write(report: dict, out_dir: str) -> None:
    report["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = os.path.join(out_dir, "nvml_check.json")
    try:
        os.makedirs(out_dir, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1, default=str)
        print(f"nvml_check: report {path}")
    except OSError as error:
        print(f"nvml_check: could not write {path} ({error})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
