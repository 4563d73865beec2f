"""Check whisperkit on this machine's NVIDIA GPU and write a small report (a few minutes, expected: never yet run here).

    python benchmarks/gpu_check.py [--device-index 0] [--output-dir gpu_check] [--audio FILE]

1. The GPU and its libraries: what NVML shows, what ctranslate2 sees, whether the CUDA libraries
   it loads can be loaded (libcublas.so.12; its Linux wheels are built without cuDNN from 4.6.3),
   and which NVML device is CUDA device ``--device-index``.
2. The bundled tiny.en on that GPU, on the bundled 79 s speech sample: sequential, batched at batch
   size 8, and batched with the batch size from the memory model, each with the Sampler at 10 Hz.
3. Whether the model's GPU timeline moved while the model ran: utilization above zero, memory
   above what it was before the model loaded, power above its lowest reading (NVML's power
   reading where the GPU has one), and the words (WER against the sample's reference).

It writes ``gpu_check.json`` and ``gpu_check.txt`` to the output folder and exits 0 when every
check passed, 1 when one failed. On a machine without an NVIDIA GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import whisperkit as wk  # noqa: E402
from whisperkit.core.models import device_choice  # noqa: E402
from whisperkit.measure.columns import gpu_column  # noqa: E402
from whisperkit.measure.environment import collect_environment, format_environment  # noqa: E402

INTERVAL_S = 0.1
WER_BOUND = 0.15


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device-index", type=int, default=0, help="CUDA device to check (CUDA's numbering)")
    parser.add_argument("--output-dir", default="gpu_check", help="where to write gpu_check.json and .txt")
    parser.add_argument("--audio", default=None, help="speech to transcribe (default: the bundled 79 s sample)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry run of this script's steps with the model on the CPU (its GPU checks then fail)")
    args = parser.parse_args()
    started = time.monotonic()
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    environment = collect_environment(cuda_index=args.device_index)
    say(format_environment(environment))
    say()
    choice = device_choice("auto", args.device_index)
    if not environment["gpus"] and environment["ctranslate2_cuda_devices"] == 0:
        say(f"No NVIDIA GPU here ({environment['gpu_unavailable_reason']}); nothing to check. "
            "Run this script on a machine with an NVIDIA GPU.")
        return 0
    report: dict = {"environment": environment, "device_index": args.device_index, "runs": {}, "checks": []}
    checks: list[tuple[str, bool, str]] = []
    if choice.device != "cuda" and args.device == "cuda":
        checks.append(("CUDA usable", False, choice.reason or "device auto picked the CPU"))
        return finish(report, checks, say, lines, args.output_dir, started)
    checks.append(("CUDA usable", choice.device == "cuda", choice.reason or "ctranslate2 sees the GPU and loads its CUDA libraries"))
    model_gpu = environment["model_gpu"] or {}
    index = model_gpu.get("nvml_index")
    checks.append(("model's GPU known to NVML", index is not None,
                   f"CUDA device {args.device_index} is NVML GPU {index} ({model_gpu.get('how')})"))
    audio = args.audio or wk.sample_path()  # its reference text lies beside it
    configs = {
        "sequential": wk.Config(mode="sequential", device=args.device, device_index=args.device_index),
        "batched, batch size 8": wk.Config(mode="batched", batch_size=8, device=args.device, device_index=args.device_index),
        "batched, batch size auto": wk.Config(mode="batched", batch_size="auto", device=args.device, device_index=args.device_index),
    }
    for label, config in configs.items():
        try:
            run = wk.run(audio, config.replace(label=label), interval=INTERVAL_S, progress=False)
        except wk.WhisperkitError as error:
            checks.append((f"{label}: transcribed", False, str(error)))
            continue
        report["runs"][label] = summarize(run, index)
        checks.extend(check_run(label, run, index))
    return finish(report, checks, say, lines, args.output_dir, started)


def summarize(run, index: int | None) -> dict:
    """The run's metrics and the model GPU's readings over the run (first, lowest, highest)."""
    readings = {}
    for metric in ("util_percent", "mem_used_mb", "power_w", "process_util_percent", "energy_j"):
        column = gpu_column(index, metric) if index is not None else None
        values = run.timeline[column].dropna() if column in run.timeline else []
        readings[metric] = ({"first": float(values.iloc[0]), "min": float(values.min()), "max": float(values.max()),
                             "samples": int(len(values))} if len(values) else None)
    return {
        "config": run.transcript.config,
        "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in run.metrics.items()},
        "gpu_readings": readings,
        "process_gpu_unavailable_reason": run.environment.get("process_gpu_unavailable_reason"),
        "text": run.transcript.text[:200],
    }


def check_run(label: str, run, index: int | None) -> list[tuple[str, bool, str]]:
    checks = [(f"{label}: on the GPU", run.transcript.config.get("device") == "cuda",
               f"device {run.transcript.config.get('device')}, compute type {run.transcript.config.get('compute_type')}")]
    wer = run.metrics.get("wer_vs_reference")
    if wer is not None:
        checks.append((f"{label}: words right", wer < WER_BOUND, f"WER {wer:.3f} against the reference (bound {WER_BOUND})"))
    if index is None:
        return checks
    readings = summarize(run, index)["gpu_readings"]
    util, memory, power = readings["util_percent"], readings["mem_used_mb"], readings["power_w"]
    checks.append((f"{label}: utilization moved", bool(util and util["max"] > 0),
                   f"GPU {index} utilization up to {util['max']:.0f} %" if util else "no utilization readings"))
    checks.append((f"{label}: memory moved", bool(memory and memory["max"] > memory["first"]),
                   f"GPU {index} memory {memory['first']:.0f} -> up to {memory['max']:.0f} MiB" if memory else "no memory readings"))
    if power is None:
        checks.append((f"{label}: power moved", True, "this GPU does not report power (not a failure)"))
    else:
        checks.append((f"{label}: power moved", power["max"] > power["min"],
                       f"GPU {index} power {power['min']:.0f} -> {power['max']:.0f} W"))
    process = readings["process_util_percent"]
    reason = run.environment.get("process_gpu_unavailable_reason")
    false_zero = bool(process and util and process["max"] == 0 and util["max"] > 0 and run.transcript.config.get("device") == "cuda")
    checks.append((f"{label}: per-process utilization never a false 0", not false_zero,
                   f"up to {process['max']:.0f} %" if process else f"missing: {reason or 'no per-process samples from NVML'}"))
    energy = run.metrics.get("gpu_energy_j_per_audio_hour")
    checks.append((f"{label}: energy", True, "no energy counter on this GPU" if energy is None or energy != energy
                   else f"{energy:.0f} J per hour of audio"))
    return checks


def finish(report: dict, checks, say, lines: list[str], output_dir: str, started: float) -> int:
    say("checks:")
    for name, passed, detail in checks:
        say(f"  [{'pass' if passed else 'FAIL'}] {name}: {detail}")
    failed = [name for name, passed, _ in checks if not passed]
    say(f"{len(checks) - len(failed)} of {len(checks)} checks passed in {time.monotonic() - started:.0f} s")
    report["checks"] = [{"check": name, "passed": passed, "detail": detail} for name, passed, detail in checks]
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "gpu_check.json"), "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2, default=str)
    with open(os.path.join(output_dir, "gpu_check.txt"), "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    print(f"report: {os.path.join(output_dir, 'gpu_check.json')} and gpu_check.txt")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
