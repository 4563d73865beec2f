"""Findings of wk.diagnose: on real CPU runs of the bundled model, and on GPU timelines recorded by
the real sampler from a fake NVML whose readings follow the run's phases."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import pytest

import whisperkit as wk
from whisperkit.core.config import Config
from whisperkit.experiments.diagnose import ORDER, diagnose, format_findings
from whisperkit.measure.columns import gpu_column
from whisperkit.measure.sampler import Sampler

try:
    from tests import fake_pynvml
except ImportError:  # run from inside tests/
    import fake_pynvml

CLIP = "aesop_03"  # one short sentence: one speech chunk
CORES = os.cpu_count() or 1


def codes(findings) -> list[str]:
    return [finding.code for finding in findings]


def find(findings, code):
    matches = [finding for finding in findings if finding.code == code]
    assert matches, f"no {code} among {codes(findings)}"
    return matches[0]


def run_with_fake_gpu(monkeypatch, config: Config, phases: dict, interval: float = 0.05, hold: dict | None = None):
    """A real CPU run sampled against a fake A100 whose utilization (device %, this process %)
    changes at each phase mark: ``phases = {"decode": (85, 0), ...}``; ``hold = {"prepare": 0.3}``
    stretches a phase on the timeline by that many seconds (a short clip's prepare is a few ms)."""
    gpu = fake_pynvml.a100(util_gpu_percent=0, util_memory_percent=0,
                           readings_file=os.path.join(tempfile.mkdtemp(prefix="wk-fake-gpu-"), "readings.json"))
    fake_pynvml.set_readings(gpu, 0, {})
    fake_pynvml.install(monkeypatch, [gpu])  # here and in the sampler's process
    mark = Sampler.mark

    def mark_and_switch(sampler, label):
        if label in phases:
            device, own = phases[label]
            fake_pynvml.set_readings(gpu, device, {os.getpid(): own} if own else {})
        mark(sampler, label)
        time.sleep((hold or {}).get(label, 0.0))

    monkeypatch.setattr(Sampler, "mark", mark_and_switch)
    return wk.run(wk.sample_path(CLIP), config, interval=interval, progress=False)


def as_if_on_gpu(run, **used):
    """``run`` as if its model had been on CUDA (the timeline stays the one recorded)."""
    config = {**run.transcript.config, "device": "cuda", "compute_type": "float16", **used}
    transcript = dataclasses.replace(run.transcript, config=config)
    return dataclasses.replace(run, transcript=transcript, config=run.config.replace(device="cuda"))


def with_util(run, phase: str, device: float, own: float | None = None):
    """A copy of ``run`` whose GPU readings in ``phase`` are replaced."""
    timeline = run.timeline.copy()
    marks = run.marks
    start = float(marks.loc[marks["label"] == phase, "time_s"].iloc[0])
    later = marks.loc[marks["time_s"] > start, "time_s"]
    end = float(later.iloc[0]) if len(later) else float("inf")
    rows = (timeline["time_s"] >= start) & (timeline["time_s"] < end)
    timeline.loc[rows, gpu_column(0, "util_percent")] = device
    if own is not None:
        timeline.loc[rows, gpu_column(0, "process_util_percent")] = own
    return dataclasses.replace(run, utilization=dataclasses.replace(run.utilization, timeline=timeline))


# ---- real CPU runs --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_before_on_cpu():
    """The seed's 'before' shape on the CPU: sequential, more workers x threads than cores."""
    return wk.run(wk.sample_path(CLIP), Config(mode="sequential", device="cpu", num_workers=max(2, CORES),
                                              cpu_threads=2), progress=False)


@pytest.fixture(scope="module")
def batched_on_cpu():
    return wk.run(wk.sample_path(CLIP), Config(mode="batched", device="cpu", batch_size=8), progress=False)


def test_batch_larger_than_the_chunks(batched_on_cpu):
    finding = find(diagnose(batched_on_cpu), "batch-larger-than-chunks")
    assert batched_on_cpu.transcript.chunks == 1
    assert "Batch size 8" in finding.title and "1 chunk" in finding.title
    assert "transcribe_clips" in finding.what_to_do
    smaller = dataclasses.replace(batched_on_cpu, transcript=dataclasses.replace(
        batched_on_cpu.transcript, config={**batched_on_cpu.transcript.config, "batch_size": 1}))
    assert "batch-larger-than-chunks" not in codes(diagnose(smaller))


def test_workers_over_callers_and_threads_over_cores(seed_before_on_cpu, batched_on_cpu):
    findings = diagnose(seed_before_on_cpu)
    workers = find(findings, "workers-over-callers")
    assert f"num_workers={max(2, CORES)}" in workers.title and "shared the weights" in workers.evidence
    threads = find(findings, "threads-over-cores")
    assert f"{2 * max(2, CORES)} threads for {CORES} cores" in threads.title
    assert "workers-over-callers" not in codes(diagnose(batched_on_cpu))
    assert "threads-over-cores" not in codes(diagnose(batched_on_cpu))  # one worker: CTranslate2's own choice
    assert seed_before_on_cpu.transcript.text.startswith("A crew, half dead with thirst")


def test_threads_per_worker_follow_ctranslate2s_default(seed_before_on_cpu):
    """cpu_threads=0 is min(4, logical CPUs), or OMP_NUM_THREADS where set (CTranslate2's src/utils.cc)."""
    def on(cores: int, omp: str | None, workers: int = 24):
        config = {**seed_before_on_cpu.transcript.config, "cpu_threads": 0, "num_workers": workers}
        environment = {**seed_before_on_cpu.environment, "cpu_logical_cores": cores, "omp_num_threads": omp}
        return dataclasses.replace(seed_before_on_cpu, environment=environment,
                                   transcript=dataclasses.replace(seed_before_on_cpu.transcript, config=config))

    assert "24 workers x 2 threads = 48 threads for 2 cores" in find(diagnose(on(2, None)), "threads-over-cores").title
    assert "24 workers x 4 threads = 96 threads for 16 cores" in find(diagnose(on(16, None)), "threads-over-cores").title
    with_omp = find(diagnose(on(16, "1")), "threads-over-cores")
    assert "24 workers x 1 threads" in with_omp.title and "OMP_NUM_THREADS=1" in with_omp.evidence
    assert "threads-over-cores" not in codes(diagnose(on(16, "1", workers=8)))


def test_long_prepare_phase(batched_on_cpu):
    transcript = batched_on_cpu.transcript
    long = dataclasses.replace(batched_on_cpu, transcript=dataclasses.replace(
        transcript, prepare_seconds=0.6 * transcript.wall_seconds))
    finding = find(diagnose(long), "long-cpu-prepare")
    assert "60 %" in finding.title and "voice detection" in finding.evidence
    assert "language detection" not in finding.evidence  # tiny.en is English-only: no detection
    short = dataclasses.replace(batched_on_cpu, transcript=dataclasses.replace(
        transcript, prepare_seconds=0.1 * transcript.wall_seconds))
    assert "long-cpu-prepare" not in codes(diagnose(short))


def test_a_comparison_is_diagnosed_on_both_sides(clip_comparison):
    findings = diagnose(clip_comparison)
    assert {f.run for f in findings} == {clip_comparison.before.label, clip_comparison.after.label}
    assert [ORDER.index(c) for c in codes(findings)] == sorted(ORDER.index(c) for c in codes(findings))
    assert "workers-over-callers" in codes(findings)  # the seed's num_workers=24 and 6


# ---- GPU timelines from the fake NVML -------------------------------------------------------


@pytest.fixture
def cpu_model_busy_gpu(monkeypatch):
    """The model on the CPU (device='cpu') while NVML shows an A100 busy with someone else's work."""
    config = Config(mode="sequential", device="cpu", num_workers=2, cpu_threads=max(2, CORES))
    return run_with_fake_gpu(monkeypatch, config, {"load": (0, 0), "prepare": (0, 0), "decode": (85, 0)})


def test_model_on_cpu_while_a_gpu_is_present_comes_first(cpu_model_busy_gpu):
    run = cpu_model_busy_gpu
    assert run.environment["gpus"] and run.transcript.config["device"] == "cpu"
    findings = diagnose(run)
    assert findings[0].code == "model-on-cpu"
    assert len(findings) > 2  # it stays first with other findings beside it
    assert "NVIDIA A100-SXM4-40GB" in findings[0].evidence and "device='cpu'" in findings[0].evidence
    assert "device='cuda'" in findings[0].what_to_do
    assert run.transcript.text.startswith("A crew, half dead with thirst")


def test_model_on_cpu_says_why_auto_fell_back(cpu_model_busy_gpu):
    run = cpu_model_busy_gpu
    missing = "the CUDA libraries ctranslate2 needs cannot be loaded (libcudnn.so.9 not found)"
    fallback = dataclasses.replace(
        run, config=run.config.replace(device="auto"),
        transcript=dataclasses.replace(run.transcript, config={
            **run.transcript.config, "device_reason": "libcublas.so.12 cannot be loaded"}))
    first = diagnose(fallback)[0]
    assert first.code == "model-on-cpu" and "libcublas.so.12 cannot be loaded" in first.evidence
    assert "whisperkit[gpu]" in first.what_to_do
    no_cuda = dataclasses.replace(fallback, transcript=run.transcript,
                                  environment={**run.environment, "ctranslate2_cuda_devices": 0,
                                               "cuda_unusable_reason": None})  # a run saved without the reason
    assert "ctranslate2 saw no CUDA device" in diagnose(no_cuda)[0].evidence
    recorded = dataclasses.replace(no_cuda, environment={**no_cuda.environment, "cuda_unusable_reason": missing})
    assert missing in diagnose(recorded)[0].evidence


def test_another_process_on_the_gpu(cpu_model_busy_gpu):
    finding = find(diagnose(cpu_model_busy_gpu), "other-process-on-gpu")
    assert "gpu0" in finding.title and "accounted for 0 %" in finding.evidence
    quiet = with_util(cpu_model_busy_gpu, "decode", 0.0)
    assert "other-process-on-gpu" not in codes(diagnose(quiet))


def test_sampling_faster_than_nvml(cpu_model_busy_gpu):
    finding = find(diagnose(cpu_model_busy_gpu), "sampling-faster-than-nvml")
    assert "0.05 s" in finding.title and "1/6 s to 1 s" in finding.evidence
    slow = cpu_model_busy_gpu.timeline.copy()
    slow["time_s"] = slow["time_s"] * 20  # one sample a second
    slowly = dataclasses.replace(cpu_model_busy_gpu.utilization, timeline=slow)
    assert "sampling-faster-than-nvml" not in codes(diagnose(dataclasses.replace(cpu_model_busy_gpu, utilization=slowly)))


@pytest.fixture
def idle_gpu_with_detection(monkeypatch):
    """A multilingual model on 'cuda' with language=None: busy in prepare, idle while decoding;
    every reading is this process's own."""
    run = run_with_fake_gpu(monkeypatch, Config(mode="sequential", device="cpu"),
                            {"load": (0, 0), "prepare": (40, 40), "decode": (3, 3)}, hold={"prepare": 0.4})
    return as_if_on_gpu(run, model="large-v3", multilingual=True)


def test_gpu_idle_for_most_of_the_decode_phase(idle_gpu_with_detection):
    findings = diagnose(idle_gpu_with_detection)
    finding = find(findings, "gpu-idle-decode")
    assert "under 10 %" in finding.evidence and "mode='batched'" in finding.what_to_do
    assert "other-process-on-gpu" not in codes(findings)  # all of it was this process's work
    busy = with_util(idle_gpu_with_detection, "decode", 95.0, 95.0)
    assert "gpu-idle-decode" not in codes(diagnose(busy))


def test_language_detection_on_the_gpu_inside_prepare(idle_gpu_with_detection):
    finding = find(diagnose(idle_gpu_with_detection), "language-detection-in-prepare")
    assert "large-v3" in finding.evidence and "up to 40 %" in finding.evidence
    assert "not CPU only" in finding.evidence and "language=" in finding.what_to_do
    english = with_util(as_if_on_gpu(idle_gpu_with_detection, model="tiny.en", multilingual=False), "prepare", 0.0, 0.0)
    assert "language-detection-in-prepare" not in codes(diagnose(english))
    # an English-only model never detects, even when the GPU was busy during prepare
    busy_english = as_if_on_gpu(idle_gpu_with_detection, model="tiny.en", multilingual=False)
    assert "language-detection-in-prepare" not in codes(diagnose(busy_english))
    saved_before = {k: v for k, v in busy_english.transcript.config.items() if k != "multilingual"}
    by_name = dataclasses.replace(busy_english, transcript=dataclasses.replace(busy_english.transcript, config=saved_before))
    assert "language-detection-in-prepare" not in codes(diagnose(by_name))  # a run saved without the flag: .en
    # the vocabulary decides, not the name: distil-large-v3 is multilingual, distil-small.en is not
    distil = as_if_on_gpu(idle_gpu_with_detection, model="distil-large-v3", multilingual=True)
    assert "language-detection-in-prepare" in codes(diagnose(distil))
    distil_en = as_if_on_gpu(idle_gpu_with_detection, model="distil-small.en", multilingual=False)
    assert "language-detection-in-prepare" not in codes(diagnose(distil_en))
    given = dataclasses.replace(idle_gpu_with_detection,
                                config=idle_gpu_with_detection.config.replace(language="en"))
    assert "language-detection-in-prepare" not in codes(diagnose(given))


def test_auto_falling_back_to_the_cpu_is_diagnosed_first(monkeypatch):
    """device='auto' on a machine whose NVML shows a GPU but whose CUDA libraries cannot load."""
    from whisperkit.core import models

    missing = "the CUDA libraries ctranslate2 needs cannot be loaded (libcublas.so.12 not found)"
    monkeypatch.setattr(models, "_cuda_unusable_reason", lambda: missing)
    run = run_with_fake_gpu(monkeypatch, Config(mode="batched", device="auto"), {"decode": (0, 0)})
    assert run.transcript.config["device"] == "cpu" and "half dead with thirst" in run.transcript.text
    first = diagnose(run)[0]
    assert first.code == "model-on-cpu" and "libcublas.so.12 not found" in first.evidence
    assert "device='auto' ran on the CPU" in first.evidence


# ---- the command, the report, the text ---------------------------------------------------


def test_cli_diagnose_prints_the_findings_of_a_saved_run(tmp_path, cli, cpu_model_busy_gpu):
    folder = wk.save(cpu_model_busy_gpu, tmp_path / "run")
    result = cli("diagnose", folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1. [model-on-cpu] The model ran on the CPU while a GPU was present")
    assert "what to do:" in result.stdout
    missing = cli("diagnose", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and missing.stderr.startswith("whisperkit: error:")
    assert "Traceback" not in missing.stderr


def test_report_has_a_diagnosis_section(tmp_path, batched_on_cpu):
    page = open(wk.report(batched_on_cpu, tmp_path / "report.html"), encoding="utf-8").read()
    assert "<h2>Diagnosis</h2>" in page and "batch-larger-than-chunks" in page


def test_format_findings_numbers_them(batched_on_cpu):
    text = format_findings(diagnose(batched_on_cpu))
    assert text.startswith("1. [") and "evidence:" in text
    assert format_findings([]).startswith("No findings")
