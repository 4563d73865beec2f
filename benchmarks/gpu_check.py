"""Check whisperkit on this machine's NVIDIA GPU and write a report (a few minutes expected; not yet timed on a GPU here).

    python benchmarks/gpu_check.py [--device-index 0] [--output-dir gpu_check] [--audio FILE]

1. The GPU and its libraries: what NVML lists, what ctranslate2 sees, whether the CUDA library
   it loads (``libcublas.so.12``) can be loaded, and which NVML device is CUDA device
   ``--device-index``. Where CUDA cannot run, every later check is listed as not measured, with
   the reason, and the script exits 1.
2. The model's GPU idle for a few seconds before any model is loaded (the baseline of memory,
   utilization and power; the sampler's own NVML errors).
3. The bundled tiny.en on that GPU, on the bundled 79 s speech sample: sequential, batched at
   batch size 8, and batched with the batch size from the memory model, each with the Sampler at
   10 Hz. Each run must be on the GPU, get the words right (WER), raise utilization, memory
   (above the idle baseline, by at least the weights) and power (above the idle readings by more
   than their spread), keep NVML's energy counter within 25 % of mean power x time, and never
   read a per-process utilization of 0 while the GPU is busy.
4. The memory model against a real batch: a batch of ``MEMORY_CHECK_BATCH`` full 30 s windows
   (the sample repeated), reporting the first batch size that ran (after any halving) and the
   peak memory above the idle baseline, which must not exceed the model's estimate by more
   than 15 %.

Every check can fail; a reading the machine cannot give (no power sensor, PIDs that NVML cannot
match) is listed under "not measured", never counted as a pass. It writes ``gpu_check.json`` and
``gpu_check.txt`` to the output folder, exits 0 when every check passed, 1 otherwise, and never
ends in a traceback (an unexpected error becomes a failed check; its traceback goes to the JSON).
On a machine with no NVIDIA GPU and no driver at all it says so, checks nothing and exits 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

INTERVAL_S = 0.1
IDLE_S = 3.0
WER_BOUND = 0.15
UTIL_MIN_PERCENT = 10.0  # a transcription on the GPU must read at least this utilization
POWER_NOISE_W = 5.0  # the least rise of power above idle that counts as moved
ENERGY_TOLERANCE = 0.25  # energy counter against mean power x time
ENERGY_MIN_S = 2.0  # shorter runs are too short for NVML's averaged power readings
MEMORY_CHECK_BATCH = 16
MEMORY_TOLERANCE = 0.15  # measured peak may exceed the estimate by this share
#: every check after "CUDA usable", listed as not measured where CUDA cannot run
LATER_CHECKS = ("model's GPU known to NVML", "idle baseline before the model loads", "runs on the GPU",
                "words right on the GPU", "utilization, memory and power moved", "energy counter",
                "per-process utilization", "sampler errors", "memory model against a real batch")


@dataclass
class Report:
    """What was checked (passed or not), what was not measured and why, and the readings."""

    checks: list[dict] = field(default_factory=list)
    not_measured: list[dict] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def check(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append({"check": name, "passed": bool(passed), "detail": detail})
        self.say(f"  [{'pass' if passed else 'FAIL'}] {name}: {detail}")
        return bool(passed)

    def skip(self, what: str, why: str) -> None:
        self.not_measured.append({"what": what, "why": why})
        self.say(f"  [not measured] {what}: {why}")


@dataclass(frozen=True)
class Readings:
    """One GPU metric over a stretch of samples (None where NVML gave nothing)."""

    first: float
    min: float
    max: float
    median: float
    samples: int


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device-index", type=int, default=0, help="CUDA device to check (CUDA's numbering)")
    parser.add_argument("--output-dir", default="gpu_check", help="where to write gpu_check.json and .txt")
    parser.add_argument("--audio", default=None, help="speech to transcribe (default: the bundled 79 s sample)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry run of this script's steps with the model on the CPU (its GPU checks then fail)")
    args = parser.parse_args()
    started = time.monotonic()
    report = Report()
    try:
        check_machine(args, report)
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - the report is written whatever happened
        report.check("gpu_check ran to the end", False, f"stopped by {type(error).__name__}: {_first_line(error)}")
        report.data["traceback"] = traceback.format_exc()
    return finish(report, args.output_dir, started)


def check_machine(args, report: Report) -> None:
    import whisperkit as wk
    from whisperkit.core.models import device_choice
    from whisperkit.measure.cuda import driver_status
    from whisperkit.measure.environment import collect_environment, format_environment

    environment = collect_environment(cuda_index=args.device_index)
    report.data["environment"] = environment
    report.say(format_environment(environment))
    report.say()
    driver = driver_status()
    report.data["cuda_driver"] = driver.to_dict()
    gpus, ct2_devices = environment["gpus"], environment["ctranslate2_cuda_devices"]
    if not gpus and ct2_devices == 0 and driver.load_error is not None and args.device == "cuda":
        report.data["no_gpu"] = True
        report.say(f"No NVIDIA GPU here ({environment['gpu_unavailable_reason']}); nothing to check. "
                   "Run this script on a machine with an NVIDIA GPU.")
        for what in ("NVML lists a GPU", "CUDA usable", *LATER_CHECKS):
            report.skip(what, "no NVIDIA GPU or driver on this machine")
        return
    report.say("checks:")
    report.check("NVML lists a GPU", bool(gpus), f"{len(gpus)} GPU(s)" if gpus else
                 f"none ({environment['gpu_unavailable_reason']}), although ctranslate2 sees {ct2_devices} CUDA device(s)")
    choice = device_choice("auto", args.device_index)
    usable = report.check("CUDA usable", choice.device == "cuda",
                          (choice.reason or "").removesuffix("; running on the CPU")
                          or "ctranslate2 sees the GPU and loads its CUDA library")
    if not usable and args.device == "cuda":
        for what in LATER_CHECKS:
            report.skip(what, 'CUDA cannot run here (see "CUDA usable")')
        return
    model_gpu = environment["model_gpu"] or {}
    index = model_gpu.get("nvml_index")
    report.check("model's GPU known to NVML", index is not None,
                 f"CUDA device {args.device_index} is NVML GPU {index} ({model_gpu.get('how')})")
    idle = idle_baseline(report, index)
    audio = args.audio or wk.sample_path()  # its reference text lies beside it
    common = dict(device=args.device, device_index=args.device_index)
    configs = {
        "sequential": wk.Config(mode="sequential", **common),
        "batched, batch size 8": wk.Config(mode="batched", batch_size=8, **common),
        "batched, batch size auto": wk.Config(mode="batched", batch_size="auto", **common),
    }
    for label, config in configs.items():
        run, sampler = transcribe(report, label, audio, config)
        if run is not None:
            check_run(report, label, run, sampler, index, idle)
    memory_model_check(report, args, index, idle)


def idle_baseline(report: Report, index: int | None) -> dict[str, Readings | None]:
    """The model's GPU before any model is loaded: ``IDLE_S`` seconds of samples."""
    from whisperkit.measure.sampler import Sampler

    with Sampler(interval=INTERVAL_S) as sampler:
        time.sleep(IDLE_S)
    readings = {metric: readings_of(sampler.timeline, index, metric)
                for metric in ("util_percent", "mem_used_mb", "power_w", "energy_j")}
    report.data["idle"] = {metric: (asdict(value) if value else None) for metric, value in readings.items()}
    memory = readings["mem_used_mb"]
    report.check("idle baseline before the model loads", memory is not None,
                 f"GPU {index}: {memory.median:.0f} MiB in use before loading" if memory else
                 f"no memory readings for GPU {index} ({sampler.gpu_unavailable_reason or 'NaN throughout'})")
    return readings


def transcribe(report: Report, label: str, audio, config, reference: bool = True):
    """``wk.run`` with the Sampler kept (its errors are not in the Run); (None, None) on a failure."""
    import whisperkit as wk

    samplers: list = []
    try:
        run = wk.run(audio, config.replace(label=label), interval=INTERVAL_S, progress=False, on_start=samplers.append)
    except wk.WhisperkitError as error:
        report.check(f"{label}: transcribed", False, str(error))
        return None, None
    report.data.setdefault("runs", {})[label] = summarize(run)
    return run, samplers[0] if samplers else None


def readings_of(timeline, index: int | None, metric: str, since_s: float | None = None) -> Readings | None:
    """First, lowest, highest and median of ``gpu{index}_{metric}`` (None without readings)."""
    from whisperkit.measure.columns import gpu_column

    if index is None:
        return None
    column = gpu_column(index, metric)
    if column not in timeline:
        return None
    frame = timeline if since_s is None else timeline[timeline["time_s"] >= since_s]
    values = frame[column].dropna()
    if not len(values):
        return None
    return Readings(float(values.iloc[0]), float(values.min()), float(values.max()), float(values.median()), int(len(values)))


def summarize(run) -> dict:
    return {
        "config": run.transcript.config.to_dict(),
        "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in run.metrics.items()},
        "batch_retries": list(run.transcript.batch_retries),
        "process_gpu_unavailable_reason": run.utilization.process_gpu_unavailable_reason,
        "text": run.transcript.text[:200],
    }


def check_run(report: Report, label: str, run, sampler, index: int | None, idle: dict) -> None:
    config = run.transcript.config
    report.check(f"{label}: on the GPU", config.get("device") == "cuda",
                 f"device {config.get('device')}, compute type {config.get('compute_type')}")
    wer = run.metrics.get("wer_vs_reference")
    if wer is None or wer != wer:
        report.skip(f"{label}: words right", "no reference text beside the audio")
    else:
        report.check(f"{label}: words right", wer < WER_BOUND, f"WER {wer:.3f} against the reference (bound {WER_BOUND})")
    if index is None:
        report.skip(f"{label}: GPU readings", "the model's GPU is not known to NVML")
        return
    timeline = run.timeline
    util, memory, power = (readings_of(timeline, index, m) for m in ("util_percent", "mem_used_mb", "power_w"))
    report.data["runs"][label]["gpu_readings"] = {"util_percent": util and asdict(util), "mem_used_mb": memory and asdict(memory),
                                                  "power_w": power and asdict(power)}
    idle_util, idle_memory, idle_power = idle["util_percent"], idle["mem_used_mb"], idle["power_w"]
    if util is None:
        report.skip(f"{label}: utilization moved", f"NVML gives no utilization for GPU {index}")
    else:
        floor = max(UTIL_MIN_PERCENT, idle_util.max if idle_util else 0.0)
        report.check(f"{label}: utilization moved", util.max >= floor and util.max > (idle_util.max if idle_util else 0.0),
                     f"GPU {index} utilization up to {util.max:.0f} % (idle up to "
                     f"{idle_util.max if idle_util else float('nan'):.0f} %, needs {floor:.0f} %)")
    check_memory_moved(report, label, run, index, memory, idle_memory)
    if power is None or idle_power is None:
        report.skip(f"{label}: power moved", f"GPU {index} reports no power reading")
    else:
        rise, noise = power.max - idle_power.max, max(POWER_NOISE_W, idle_power.max - idle_power.min)
        report.check(f"{label}: power moved", rise > noise,
                     f"GPU {index} power up to {power.max:.0f} W, {rise:+.0f} W above the idle maximum (noise {noise:.0f} W)")
    check_energy(report, label, timeline, index)
    check_process_util(report, label, run, index, util)
    check_sampler_errors(report, label, sampler, run.timeline, index)


def check_memory_moved(report: Report, label: str, run, index: int, memory: Readings | None, idle_memory: Readings | None) -> None:
    from whisperkit.core.batching import weights_mb

    if memory is None or idle_memory is None:
        report.skip(f"{label}: memory moved", f"no memory readings for GPU {index} (idle or during the run)")
        return
    weights = weights_mb(run.transcript.config.get("model") or "tiny", run.transcript.config.get("compute_type", "float16"))
    rise = memory.max - idle_memory.median
    report.check(f"{label}: memory moved", rise >= weights,
                 f"GPU {index} memory {idle_memory.median:.0f} MiB before loading -> up to {memory.max:.0f} MiB "
                 f"(+{rise:.0f} MiB; the weights alone are about {weights:.0f} MiB)")


def check_energy(report: Report, label: str, timeline, index: int) -> None:
    from whisperkit.measure.columns import gpu_column

    energy, power = gpu_column(index, "energy_j"), gpu_column(index, "power_w")
    if energy not in timeline or power not in timeline:
        report.skip(f"{label}: energy counter", "no energy or power column for this GPU")
        return
    frame = timeline[["time_s", energy, power]].dropna()
    if len(frame) < 3:
        report.skip(f"{label}: energy counter", f"GPU {index} has no energy counter or power readings (pre-Volta?)")
        return
    seconds = float(frame["time_s"].iloc[-1] - frame["time_s"].iloc[0])
    if seconds < ENERGY_MIN_S:
        report.skip(f"{label}: energy counter", f"the run lasted {seconds:.1f} s, too short against NVML's averaged power")
        return
    counted = float(frame[energy].iloc[-1] - frame[energy].iloc[0])
    integrated = float(((frame[power].iloc[1:].to_numpy() + frame[power].iloc[:-1].to_numpy()) / 2
                        * frame["time_s"].diff().iloc[1:].to_numpy()).sum())
    off = abs(counted - integrated) / integrated if integrated > 0 else math.inf
    report.check(f"{label}: energy counter", off <= ENERGY_TOLERANCE,
                 f"counter {counted:.0f} J, mean power x time {integrated:.0f} J over {seconds:.1f} s "
                 f"({off:.0%} apart, bound {ENERGY_TOLERANCE:.0%})")


def check_process_util(report: Report, label: str, run, index: int, util: Readings | None) -> None:
    process = readings_of(run.timeline, index, "process_util_percent")
    if process is None:
        reason = run.utilization.process_gpu_unavailable_reason or "no per-process samples from NVML"
        report.skip(f"{label}: per-process utilization", reason)
        return
    busy = util is not None and util.max >= UTIL_MIN_PERCENT
    if not busy:
        report.skip(f"{label}: per-process utilization", "the GPU never read busy, so a false 0 cannot be told apart")
        return
    report.check(f"{label}: per-process utilization never a false 0", not (busy and process.max == 0),
                 f"this process up to {process.max:.0f} % while the GPU read up to {util.max if util else float('nan'):.0f} %")


def check_sampler_errors(report: Report, label: str, sampler, timeline, index: int) -> None:
    """Failed NVML queries: a column that failed only sometimes lost samples (a failure); one that
    never answered is a reading this GPU does not give (not measured)."""
    from whisperkit.measure.columns import parse_gpu_column

    errors = dict(sampler.errors) if sampler is not None else {}
    report.data["runs"][label]["sampler_errors"] = errors
    mine = {column: count for column, count in errors.items() if (parse_gpu_column(column) or (None,))[0] == index}
    never = [column for column in mine if column not in timeline or timeline[column].isna().all()]
    for column in never:
        report.skip(f"{label}: {column}", f"NVML never answered ({mine[column]} failed queries)")
    lost = {column: count for column, count in mine.items() if column not in never}
    report.check(f"{label}: sampler lost no readings of GPU {index}", not lost,
                 "no failed queries" if not lost else ", ".join(f"{c}: {n} failed" for c, n in lost.items()))


def memory_model_check(report: Report, args, index: int | None, idle: dict) -> None:
    """A batch of MEMORY_CHECK_BATCH full windows: the first batch size that runs, and its peak
    against :func:`whisperkit.core.batching.estimate_mb`."""
    import numpy as np

    import whisperkit as wk
    from whisperkit.core.audio import load_audio
    from whisperkit.core.batching import estimate_mb, weights_mb

    name = "memory model against a real batch"
    if index is None or idle["mem_used_mb"] is None:
        report.skip(name, "no memory readings of the model's GPU")
        return
    samples = load_audio(args.audio or wk.sample_path()).samples
    repeats = math.ceil(MEMORY_CHECK_BATCH * 30 * 1.2 * 16000 / len(samples))
    config = wk.Config(mode="batched", batch_size=MEMORY_CHECK_BATCH, device=args.device, device_index=args.device_index)
    run, _ = transcribe(report, name, np.tile(samples, repeats).astype(np.float32), config)
    if run is None:
        return
    used = run.transcript.config
    ran, chunks = used.get("batch_size"), run.transcript.chunks
    memory = readings_of(run.timeline, index, "mem_used_mb")
    if memory is None:
        report.skip(name, "no memory readings during the batch")
        return
    peak = memory.max - idle["mem_used_mb"].median
    estimate = estimate_mb(used.get("model") or "tiny", used.get("compute_type", "float16"), int(ran or 1), used.get("beam_size", 5))
    report.data["memory_model"] = {"asked_batch_size": MEMORY_CHECK_BATCH, "first_batch_size_that_ran": ran,
                                   "retries": list(run.transcript.batch_retries), "chunks": chunks,
                                   "peak_above_idle_mb": peak, "estimate_mb": estimate}
    report.check(f"{name}: batch size {MEMORY_CHECK_BATCH} ran", ran == MEMORY_CHECK_BATCH and not run.transcript.batch_retries,
                 f"first batch size that ran: {ran} ({len(run.transcript.batch_retries)} halvings; {chunks} chunks)")
    weights = weights_mb(used.get("model") or "tiny", used.get("compute_type", "float16"))
    report.check(f"{name}: peak within the estimate", weights <= peak <= estimate * (1 + MEMORY_TOLERANCE),
                 f"peak {peak:.0f} MiB above the idle baseline at batch size {ran}; the model estimates {estimate:.0f} MiB "
                 f"(bound +{MEMORY_TOLERANCE:.0%}; at least the weights, {weights:.0f} MiB, must show)")


def finish(report: Report, output_dir: str, started: float) -> int:
    failed = [check["check"] for check in report.checks if not check["passed"]]
    passed = len(report.checks) - len(failed)
    report.say(f"{passed} of {len(report.checks)} checks passed, {len(report.not_measured)} not measured, "
               f"in {time.monotonic() - started:.0f} s")
    if report.not_measured:
        report.say("not measured: " + "; ".join(item["what"] for item in report.not_measured))
    document = {"checks": report.checks, "not_measured": report.not_measured, **report.data}
    try:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "gpu_check.json"), "w", encoding="utf-8") as out:
            json.dump(document, out, indent=2, default=str)
        with open(os.path.join(output_dir, "gpu_check.txt"), "w", encoding="utf-8") as out:
            out.write("\n".join(report.lines) + "\n")
        print(f"report: {os.path.join(output_dir, 'gpu_check.json')} and gpu_check.txt")
    except OSError as error:
        print(f"gpu_check: could not write the report to {output_dir} ({error})", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
