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

The raw recording is ``benchmarks/nvml_raw.py`` (bring both files). Without torch, or where
PyTorch sees no CUDA device, or NVML cannot start, it refuses in one line
(exit 2, with a report saying why). Exit 0 when every step ran, 1 when one failed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nvml_raw import MIB, RawPoller, call, first_line, guarded, memory, process_api, text  # noqa: E402

INTERVAL_S = 0.1
IDLE_S = 3.0
ALLOC_MIB = 4096
HOLD_S = 3.0
MATMUL_S = 6.0
MATMUL_N = 8192
CHILD_TIMEOUT_S = 90


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
    for version, records in (("v1", slow), ("v2", both)):
        used = {label: sorted(r["memory"][version]["used"] for r in records if r["phase"] == label) for label in ("idle", "alloc")}
        if used["idle"] and used["alloc"]:
            delta = used["alloc"][len(used["alloc"]) // 2] - used["idle"][len(used["idle"]) // 2]
            out.append(finding(f"allocation seen in raw {version} used (MiB)", ALLOC_MIB, delta,
                               lambda m: abs(m - ALLOC_MIB) <= 0.05 * ALLOC_MIB + 64))
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


def finding(what: str, expected, measured: float, ok) -> dict:
    value = None if measured is None or (isinstance(measured, float) and math.isnan(measured)) else measured
    return {"what": what, "expected": expected, "measured": value, "as_expected": None if value is None else bool(ok(value))}


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
