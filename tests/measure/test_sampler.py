"""The utilization sampler (:mod:`whisperkit.measure.sampler`): the CPU side for real, the GPU side
against a fake pynvml. NVML sessions and the GPU inventory on their own: test_nvml.py; the monitor
command: tests/cli/test_monitor_cli.py."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pynvml
import pytest

from whisperkit.errors import ConfigError, WhisperkitError
from whisperkit.measure import nvml
from whisperkit.measure.sampler import Sampler

try:
    from tests import fake_pynvml
except ImportError:
    import fake_pynvml

ROOT = Path(__file__).resolve().parents[2]
GPU_SUFFIXES = ["util_percent", "mem_util_percent", "mem_used_mb", "mem_total_mb", "power_w",
                "sm_clock_mhz", "temperature_c", "process_util_percent", "energy_j", "mem_reserved_mb",
                "sm_active_percent", "sm_occupancy_percent", "tensor_active_percent", "dram_bw_percent"]
GPM_SUFFIXES = GPU_SUFFIXES[-4:]

try:
    from tests import machine
except ImportError:
    import machine

CPU_COLUMNS, HAS_REAL_NVML = machine.CPU_COLUMNS, machine.HAS_REAL_NVML


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(1000))


# -- CPU side, for real ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cpu_run():
    """One real run: idle 1 s, then a pure-Python busy loop 1 s, at 10 Hz. ``busy_share`` is the
    percent of all cores this process used in the busy phase by the kernel's own count
    (``time.process_time``): on a machine busy with other work the loop gets less than a core."""
    before = time.monotonic()
    with Sampler(interval=0.1) as sampler:
        after = time.monotonic()
        idle_at = time.monotonic()
        sampler.mark("idle")
        time.sleep(1.0)
        busy_at = time.monotonic()
        busy_cpu = time.process_time()
        sampler.mark("busy")
        busy(1.0)
        busy_cpu = time.process_time() - busy_cpu
        busy_end = time.monotonic()
    end = time.monotonic()
    share = 100.0 * busy_cpu / (busy_end - busy_at) / os.cpu_count()
    return sampler, {"before": before, "after": after, "idle": idle_at, "busy": busy_at, "end": end, "busy_share": share}


def test_busy_phase_shows_in_process_cpu_and_idle_stays_low(cpu_run):
    sampler, at = cpu_run
    summary = sampler.summary()
    one_core = 100 / os.cpu_count()
    busy_mean = summary.loc[("busy", "process_cpu_percent"), "mean"]
    idle_mean = summary.loc[("idle", "process_cpu_percent"), "mean"]
    if at["busy_share"] < 0.25 * one_core:
        pytest.skip(f"the busy loop got {at['busy_share']:.1f} % of the cores: the machine is too busy to tell")
    # what the sampler read agrees with the kernel's count of this process's CPU time
    assert 0.7 * at["busy_share"] < busy_mean < 1.3 * at["busy_share"] + 0.05 * one_core, (summary.loc["busy"], at)
    assert busy_mean < 1.3 * one_core  # one thread cannot use more than one core of all of them
    assert idle_mean < 0.15 * one_core, summary.loc["idle"]
    # the machine-wide number sees the busy core too
    assert summary.loc[("busy", "cpu_percent"), "mean"] > 0.6 * one_core


def test_marks_land_at_the_recorded_times(cpu_run):
    sampler, at = cpu_run
    marks = sampler.marks
    assert list(marks.columns) == ["time_s", "label"]
    assert list(marks["label"]) == ["idle", "busy"]
    start_uncertainty = at["after"] - at["before"]
    for label, t in zip(["idle", "busy"], marks["time_s"]):
        expected = at[label] - at["before"]
        assert expected - start_uncertainty - 0.005 <= t <= expected + 0.005, (label, t, expected)
    gap = marks["time_s"].iloc[1] - marks["time_s"].iloc[0]
    assert gap == pytest.approx(at["busy"] - at["idle"], abs=0.005)


def test_sample_count_and_cadence_follow_the_interval(cpu_run):
    sampler, at = cpu_run
    timeline = sampler.timeline
    assert list(timeline.columns)[:len(CPU_COLUMNS)] == CPU_COLUMNS
    duration = at["end"] - at["after"]
    expected = duration / 0.1 + 2  # first sample at start, one per slot, last at stop
    assert abs(len(timeline) - expected) <= 3, (len(timeline), expected)
    times = timeline["time_s"].to_numpy()
    assert times[0] == pytest.approx(0, abs=0.01) and (times[1:] > times[:-1]).all()
    # scheduled at k * 0.1 s from start: no drift, even at the end
    offsets = (times[1:-1] + 0.05) % 0.1 - 0.05
    assert (abs(offsets) < 0.03).mean() >= 0.9, offsets
    assert timeline["time_s"].iloc[-2] == pytest.approx(round(timeline["time_s"].iloc[-2], 1), abs=0.03)
    # the first sample only primes the CPU counters
    assert math.isnan(timeline["cpu_percent"].iloc[0]) and math.isnan(timeline["process_cpu_percent"].iloc[0])
    assert timeline["process_rss_mb"].iloc[0] > 5
    assert timeline["cpu_percent"].iloc[1:-1].between(0, 100).all()


def test_summary_has_all_and_each_phase(cpu_run):
    sampler, _ = cpu_run
    summary = sampler.summary()
    assert list(summary.columns) == ["samples", "mean", "p50", "p95", "max", "errors"]
    assert list(summary.index.get_level_values("phase").unique()) == ["all", "start", "idle", "busy"]
    rss = summary.loc[("all", "process_rss_mb")]
    assert rss["samples"] == len(sampler.timeline) and rss["max"] >= rss["p95"] >= rss["p50"] > 0
    assert summary["errors"].sum() == 0
    assert "time_s" not in summary.index.get_level_values("metric")  # the clock, not a metric
    assert summary.loc[("idle", "process_rss_mb"), "samples"] >= 9


def test_exception_or_ctrl_c_inside_with_ends_the_sampling_process_and_keeps_the_timeline():
    with pytest.raises(ZeroDivisionError):
        with Sampler(interval=0.05) as sampler:
            waited = time.monotonic() + 30  # a busy machine delays the samples; the test is what ends them
            while len(sampler.timeline) < 5 and time.monotonic() < waited:
                time.sleep(0.05)
            _ = 1 / 0
    assert not sampler.running and sampler._process.poll() is not None
    assert len(sampler.timeline) >= 5
    with pytest.raises(KeyboardInterrupt):
        with Sampler(interval=0.05) as interrupted:
            raise KeyboardInterrupt
    assert interrupted._process.poll() is not None and 2 <= len(interrupted.timeline) <= 3  # first and last
    assert not [t for t in threading.enumerate() if t.name.startswith("whisperkit-sampler")]


def test_the_sampling_process_ends_when_its_parent_dies(tmp_path):
    """A parent killed without stopping its Sampler: the sampling process sees its pipe close and ends."""
    import psutil

    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from whisperkit.measure.sampler import Sampler\n"
            "s = Sampler(interval=0.05).start(); print(s._process.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code, str(ROOT)], stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
    finally:
        parent.kill()
        parent.wait()
    child.wait(timeout=10)  # raises TimeoutExpired if it lives on


def test_samples_keep_their_schedule_while_python_and_every_core_are_busy():
    """At 10 Hz over 4.5 s, at least 43 of the 45 slots are sampled on time while this process
    spins a pure-Python loop and other processes keep every core busy (a thread in this
    interpreter delivered 27 to 38). Skipped where other work already overloads the machine: the
    schedule of any process is then the machine's, not the sampler's (benchmarks/sampler_overhead.py
    compares with a thread there)."""
    cores = os.cpu_count() or 1
    if os.getloadavg()[0] > cores:
        pytest.skip(f"load average {os.getloadavg()[0]:.1f} on {cores} cores: too busy to judge a schedule")
    spin = "import time\nend = time.monotonic() + 8\nwhile time.monotonic() < end: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.3)
        with Sampler(interval=0.1, gpus=False) as sampler:
            started = time.monotonic()
            while time.monotonic() - started < 4.6:
                sum(range(200))  # holds the GIL
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    times = sampler.timeline["time_s"]
    # a slot counts when a sample landed within 30 ms of it (a third of the interval)
    slots = {round(t / 0.1) for t in times if 0.05 < t <= 4.5 and abs(t / 0.1 - round(t / 0.1)) < 0.3}
    assert len(slots) >= 43, sorted(slots)


def test_start_twice_raises_and_stop_is_idempotent():
    sampler = Sampler(interval=0.05)
    sampler.stop()  # before start: nothing to do
    with sampler:
        with pytest.raises(RuntimeError, match="already been started"):
            sampler.start()
    sampler.stop()
    with pytest.raises(RuntimeError):
        sampler.start()


@pytest.mark.parametrize("interval", [0, -0.5, math.nan, math.inf, "0.1", True])
def test_interval_must_be_positive_seconds(interval):
    with pytest.raises(ConfigError, match="interval"):
        Sampler(interval=interval)
    assert issubclass(ConfigError, WhisperkitError)


def test_watching_a_missing_process_is_a_clear_error():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ConfigError, match=str(child.pid)):
        Sampler(interval=0.1, pid=child.pid).start()


def test_process_tree_includes_children():
    import resource

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    cpu_before, started = children_cpu(), time.monotonic()
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.monotonic() + 1.2\n"
                              "while time.monotonic() < end: pass"])
    try:
        with Sampler(interval=0.1, gpus=False) as sampler:  # this process only sleeps
            time.sleep(0.8)
    finally:
        child.wait()
    # the child's share of all cores over its life, by the kernel's count (less than a core on a busy machine)
    share = 100.0 * (children_cpu() - cpu_before) / (time.monotonic() - started) / os.cpu_count()
    one_core = 100 / os.cpu_count()
    if share < 0.25 * one_core:
        pytest.skip(f"the child got {share:.1f} % of the cores: the machine is too busy to tell")
    assert sampler.timeline["process_cpu_percent"].iloc[2:-1].mean() > 0.6 * share, share
    assert "gpu0_util_percent" not in sampler.timeline and "gpus=False" in sampler.gpu_unavailable_reason


def test_import_is_cheap():
    code = "import sys, whisperkit.measure.sampler, whisperkit.measure.nvml; print(sorted({'pandas', 'psutil', 'pynvml'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# -- real NVML, whatever this machine has ------------------------------------------------------

def test_real_pynvml_records_what_this_machine_has():
    if machine.has_nvml_gpu():
        with Sampler(interval=0.05) as sampler:
            time.sleep(0.15)
        assert sampler.gpu_available and sampler.gpu_unavailable_reason is None
        assert list(sampler.timeline.columns)[:len(CPU_COLUMNS)] == CPU_COLUMNS
        assert "gpu0_mem_total_mb" in sampler.timeline
        return
    if HAS_REAL_NVML:
        pytest.skip("an NVIDIA driver library is installed but NVML shows no GPU")
    assert sys.modules.get("pynvml") is pynvml  # the real nvidia-ml-py module, no fake
    assert sys.modules.get("pynvml") is pynvml  # the real nvidia-ml-py module, no fake
    with Sampler(interval=0.05) as sampler:
        time.sleep(0.15)
    assert sampler.gpu_available is False
    assert "NVMLError_LibraryNotFound" in sampler.gpu_unavailable_reason
    assert "driver" in sampler.gpu_unavailable_reason and "CPU only" in sampler.gpu_unavailable_reason
    assert list(sampler.timeline.columns) == CPU_COLUMNS
    gpus, reason = nvml.gpu_inventory()
    assert gpus == [] and "driver library not found" in reason


# -- GPU side, against the fake ----------------------------------------------------------------

def test_two_gpus_fill_every_column_in_the_right_units(two_gpus):
    with Sampler(interval=0.05) as sampler:
        time.sleep(0.3)
    timeline = sampler.timeline
    assert sampler.gpu_available and sampler.gpu_unavailable_reason is None
    gpu_columns = [f"gpu{i}_{suffix}" for i in (0, 1) for suffix in GPU_SUFFIXES]
    assert list(timeline.columns) == CPU_COLUMNS + gpu_columns
    first = timeline.iloc[0]
    assert first["gpu0_mem_total_mb"] == 40960 and first["gpu0_mem_used_mb"] == 4608  # MiB from bytes
    assert first["gpu1_mem_total_mb"] == 24576 and first["gpu1_mem_used_mb"] == 10240
    assert first["gpu0_power_w"] == 251.5  # W from 251500 mW
    assert (first["gpu0_util_percent"], first["gpu0_mem_util_percent"]) == (87, 41)
    assert (first["gpu1_util_percent"], first["gpu1_mem_util_percent"]) == (99, 63)
    assert (first["gpu0_sm_clock_mhz"], first["gpu1_temperature_c"]) == (1410, 71)
    assert timeline["gpu0_power_w"].notna().all()
    # RTX 3090 power is NotSupported: NaN throughout, asked once, not an error
    assert timeline["gpu1_power_w"].isna().all()
    assert len(timeline) >= 6
    assert sampler.summary()["errors"].sum() == 0
    # neither GPU has GPM (before Hopper): NaN, said once per column, not an error
    assert timeline[[f"gpu{i}_{s}" for i in (0, 1) for s in GPM_SUFFIXES]].isna().all().all()
    assert "Hopper" in sampler.column_reasons["gpu0_sm_active_percent"]
    assert "gpu1_power_w" in sampler.column_reasons and "NotSupported" in sampler.column_reasons["gpu1_power_w"]
    # the total energy counter, millijoules to joules: rising with the fake's power
    energy = timeline["gpu0_energy_j"]
    assert energy.iloc[0] >= 5000 and energy.is_monotonic_increasing
    assert not sampler.process_gpu_unavailable_reason


def test_gpu_lost_mid_run_leaves_nan_and_the_rest_goes_on(monkeypatch):
    # at open: MIG mode; per sample: utilization, memory (v2), power, clock, temperature, energy,
    # process utilization; the first sample also lists the compute processes (the PID check) and
    # asks whether GPM is supported
    calls_per_sample = 7
    lost = fake_pynvml.rtx3090(lost_after_calls=1 + 3 * calls_per_sample + 2 + 1)  # dies in sample 4, at memory
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(), lost])
    with Sampler(interval=0.05) as sampler:
        time.sleep(0.5)
    timeline = sampler.timeline
    assert len(timeline) >= 8
    measured = [s for s in GPU_SUFFIXES if s != "process_util_percent" and s not in GPM_SUFFIXES]
    gpu1 = timeline[[f"gpu1_{s}" for s in measured]]
    assert gpu1.iloc[:3].notna().all().all()
    assert gpu1.iloc[4:].isna().all().all()
    assert timeline["gpu1_mem_used_mb"].iloc[3] != timeline["gpu1_mem_used_mb"].iloc[3]  # the failing call
    # the lost GPU is not asked again; the other GPU and the CPU go on
    assert timeline[[f"gpu0_{s}" for s in measured]].notna().all().all()
    assert timeline["process_rss_mb"].notna().all()
    summary = sampler.summary()
    assert summary.loc[("all", "gpu1_mem_used_mb"), "errors"] == 1
    assert summary.loc[("all", "gpu0_util_percent"), "errors"] == 0
    assert sampler.errors == {"gpu1_mem_used_mb": 1, "gpu1_mem_total_mb": 1, "gpu1_mem_reserved_mb": 1}


@pytest.mark.parametrize("code, words", [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, ["NVMLError_LibraryNotFound", "driver library not found"]),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, ["NVMLError_DriverNotLoaded", "driver is not loaded"]),
])
def test_no_driver_means_cpu_only_with_a_reason(monkeypatch, code, words):
    fake = fake_pynvml.install(monkeypatch, [fake_pynvml.a100()], init_error=code)
    with Sampler(interval=0.05) as sampler:
        time.sleep(0.15)
    assert sampler.gpu_available is False
    assert all(word in sampler.gpu_unavailable_reason for word in words), sampler.gpu_unavailable_reason
    assert list(sampler.timeline.columns) == CPU_COLUMNS and len(sampler.timeline) >= 3
    gpus, reason = nvml.gpu_inventory()
    assert fake.state.init_calls == 1 and fake.state.shutdown_calls == 0
    assert sum(n for (name, _), n in fake.state.calls.items() if name != "nvmlInit") == 0
    assert gpus == [] and words[0] in reason


def test_missing_pynvml_module_means_cpu_only(monkeypatch):
    fake_pynvml.install_missing(monkeypatch)
    with Sampler(interval=0.05) as sampler:
        pass
    assert sampler.gpu_available is False and "nvidia-ml-py" in sampler.gpu_unavailable_reason


def test_process_util_sums_sm_util_of_the_watched_tree_only(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    try:
        a100 = fake_pynvml.a100(process_sm_util={os.getpid(): 30, child.pid: 12, 1: 50})
        fake_pynvml.install(monkeypatch, [a100, fake_pynvml.rtx3090()])  # nothing runs on gpu1
        with Sampler(interval=0.05) as tree:
            time.sleep(0.3)
        with Sampler(interval=0.05, pid=child.pid) as only_child:
            time.sleep(0.2)
    finally:
        child.kill()
        child.wait()
    assert (tree.timeline["gpu0_process_util_percent"] == 42).all()
    assert (only_child.timeline["gpu0_process_util_percent"] == 12).all()
    # gpu1 never reported per-process samples: unknown, not 0
    assert tree.timeline["gpu1_process_util_percent"].isna().all()


def test_samplers_read_nvml_in_their_own_process(two_gpus):
    with Sampler(interval=0.05) as first, Sampler(interval=0.05) as second:
        time.sleep(0.1)
        assert nvml._users == 0  # this process does not hold NVML open
    assert first.gpu_available and second.gpu_available
    assert two_gpus.state.init_calls == 0
