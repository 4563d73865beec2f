"""What a user with a GPU meets on the first day, against the fake pynvml: the driver's memory
reservation, MIG, process lists on mismatched drivers, per-process samples, GPM, and a diagnosis
of the model's GPU on a shared node. One test per defect; each fails on the code before it."""

from __future__ import annotations

import ctypes
import math
import os
import sys
import tempfile
import time

import pynvml
import pytest

import whisperkit as wk
from whisperkit.core.config import Config
from whisperkit.experiments.diagnose import diagnose
from whisperkit.measure import gpu_processes, nvml
from whisperkit.measure.sampler import Sampler
from whisperkit.views import plots

try:
    from tests import fake_pynvml
except ImportError:  # run from inside tests/
    import fake_pynvml

GPM = ("sm_active_percent", "sm_occupancy_percent", "tensor_active_percent", "dram_bw_percent")
MIG_3G = "MIG-7f8e9d0c-2b1a-4c3d-8e5f-6a7b8c9d0e1f"  # the h100_mig's 3g.40gb instance


@pytest.fixture
def host_namespace(monkeypatch):
    monkeypatch.setattr(gpu_processes, "pid_namespace", lambda path=None: "host")


@pytest.fixture
def in_a_container(monkeypatch, tmp_path):
    """/proc/self/ns/pid not the host's (a file whose inode is not PROC_PID_INIT_INO stands in for it)."""
    namespace = tmp_path / "pid"
    namespace.write_text("")
    monkeypatch.setattr(gpu_processes, "PID_NAMESPACE_PATH", str(namespace))


# -- memory: allocations, not the driver's reservation -----------------------------------------

def test_memory_used_is_the_allocations_and_the_reservation_has_its_own_column(monkeypatch):
    """The H100's NVML v1 says used = 6 GiB allocated + 531 MiB reserved; nvidia-smi (v2) says 6 GiB."""
    fake_pynvml.install(monkeypatch, [fake_pynvml.h100()])
    with Sampler(interval=0.05) as sampler:
        time.sleep(0.2)
    first = sampler.timeline.iloc[0]
    assert first["gpu0_mem_used_mb"] == 6144 and first["gpu0_mem_reserved_mb"] == 531
    assert first["gpu0_mem_total_mb"] == 81920
    assert sampler.errors == {}


def test_memory_falls_back_to_v1_on_a_driver_without_v2(monkeypatch):
    fake_pynvml.install(monkeypatch, [fake_pynvml.h100()], driver="old")
    with nvml.NvmlSession() as session:
        values = [session.read(set()) for _ in range(3)][-1]
        assert values["gpu0_mem_used_mb"] == 6144 + 531  # v1 counts the reservation as used
        assert math.isnan(values["gpu0_mem_reserved_mb"])
        assert "FunctionNotFound" in session.column_reasons["gpu0_mem_reserved_mb"]
        assert "gpu0_mem_used_mb" not in session.column_reasons
        assert session.drain_errors() == []


def test_the_environment_says_reserved_memory_mig_mode_and_gpm(monkeypatch):
    from whisperkit.measure.environment import format_environment

    fake_pynvml.install(monkeypatch, [fake_pynvml.h100(), fake_pynvml.h100_mig()])
    gpus, _ = nvml.gpu_inventory()
    assert (gpus[0]["memory_reserved_mb"], gpus[0]["mig_mode"], gpus[0]["gpm"]) == (531, False, True)
    assert gpus[0]["memory_free_mb"] == 81920 - 6144 - 531
    assert gpus[1]["mig_mode"] is True and math.isnan(gpus[1]["memory_total_mb"])  # NoPermission on the parent
    text = format_environment({**wk.collect_environment(), "gpus": gpus})
    assert "HBM3, 81920 MiB (75245 MiB free), driver 550.54.15, CUDA 12.4, GPM counters" in text
    assert "CUDA 12.4, MIG mode, GPM counters" in text


# -- MIG: the model's instance, and NotSupported said once ------------------------------------

def test_the_models_mig_instance_memory_reaches_the_timeline(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", MIG_3G)
    fake_pynvml.install(monkeypatch, [fake_pynvml.rtx3090(), fake_pynvml.h100_mig()])
    with Sampler(interval=0.05) as sampler:
        time.sleep(0.3)
    timeline = sampler.timeline
    assert sampler.mig_instances == {1: MIG_3G}
    assert (timeline["gpu1_mem_total_mb"] == 40 * 1024).all() and (timeline["gpu1_mem_used_mb"] == 2048).all()
    assert (timeline["gpu1_sm_active_percent"].iloc[1:] == 61).all()  # GPM of the instance (nvmlGpmMigSampleGet)
    # utilization and per-process queries are NotSupported on a MIG parent: NaN, said once, no errors
    assert timeline["gpu1_util_percent"].isna().all()
    assert "MIG mode" in sampler.column_reasons["gpu1_util_percent"]
    assert "NotSupported" in sampler.column_reasons["gpu1_process_util_percent"]
    assert sampler.errors == {} and sampler.summary()["errors"].sum() == 0
    assert (timeline["gpu0_mem_used_mb"] == 10240).all()  # the other GPU as before


def test_a_mig_parents_memory_without_permission_is_marked_once(monkeypatch):
    """No MIG instance is the model's (CUDA device 0 is the RTX): the parent's memory is NoPermission."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    fake = fake_pynvml.install(monkeypatch, [fake_pynvml.rtx3090(), fake_pynvml.h100_mig()])
    with nvml.NvmlSession() as session:
        values = [session.read(set()) for _ in range(4)][-1]
        assert math.isnan(values["gpu1_mem_used_mb"]) and values["gpu1_power_w"] == 180
        assert "NoPermission" in session.column_reasons["gpu1_mem_used_mb"]
        assert session.drain_errors() == []
    assert fake.state.calls[("nvmlDeviceGetMemoryInfo", 1)] == 2  # v2 once and v1 once, never again


# -- process lists: no lost sample, no garbage PIDs --------------------------------------------

def test_a_driver_without_v3_loses_no_sample(monkeypatch):
    """nvidia-ml-py 13 raises NVMLLibraryMismatchError (a plain Exception) there; the list comes from _v2."""
    fake = fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={os.getpid(): 30})], driver="old")
    fake.nvmlInit()
    with pytest.raises(pynvml.NVMLLibraryMismatchError):
        fake.nvmlDeviceGetComputeRunningProcesses(fake.nvmlDeviceGetHandleByIndex(0))
    fake.nvmlShutdown()
    with Sampler(interval=0.05) as sampler:
        time.sleep(0.4)
    assert len(sampler.timeline) >= 6 and "sample" not in sampler.errors and sampler.errors == {}
    assert (sampler.timeline["gpu0_process_util_percent"] == 30).all()


def test_the_query_wrapper_catches_a_library_mismatch(monkeypatch):
    fake = fake_pynvml.install(monkeypatch, [fake_pynvml.a100()], driver="old")
    with nvml.NvmlSession() as session:
        handle = session.devices[0].handle
        for _ in range(2):
            assert session.query("nvmlDeviceGetComputeRunningProcesses", handle, device=0, default=None,
                                 columns=["gpu0_process_util_percent"]) is None
        assert "NVMLLibraryMismatchError" in session.column_reasons["gpu0_process_util_percent"]
        assert session.drain_errors() == []
    assert fake.state.calls[("nvmlDeviceGetComputeRunningProcesses_v3", 0)] == 0


def test_an_r535_driver_gives_every_pid_not_garbage_after_the_first(monkeypatch, in_a_container):
    """R535's _v3 writes 5-field entries; nvidia-ml-py 13 reads 4: our PID, listed second, is lost there."""
    pids = [1, os.getpid()]
    fake = fake_pynvml.install(monkeypatch, [fake_pynvml.a100(compute_pids=pids, process_sm_util={1: 50})],
                               driver="r535")
    fake.nvmlInit()
    handle = fake.nvmlDeviceGetHandleByIndex(0)
    assert [p.pid for p in fake.nvmlDeviceGetComputeRunningProcesses(handle)] != pids  # the garbage
    api = gpu_processes.process_list_api(fake)
    assert api.struct is gpu_processes.ProcessInfoV3 and api.symbol.endswith("_v3")
    assert gpu_processes.compute_pids(fake, api, handle) == pids
    fake.nvmlShutdown()
    with nvml.NvmlSession() as session:  # inside a container: only the match makes the value trustworthy
        assert session.read({os.getpid()})["gpu0_process_util_percent"] == 0  # listed, but ran no kernel
        assert session.process_util_reason is None


def test_the_process_list_struct_is_chosen_as_nvitop_does():
    structs = {}
    for driver in fake_pynvml.DRIVERS:
        fake = fake_pynvml.make_fake([fake_pynvml.a100()], driver=driver)
        fake.nvmlInit()
        api = gpu_processes.process_list_api(fake)
        structs[driver] = (api.symbol.rpartition("Processes")[2], ctypes.sizeof(api.struct))
        fake.nvmlShutdown()
    assert structs == {"current": ("_v3", 24), "r535": ("_v3", 32), "old": ("_v2", 24)}


# -- per-process utilization: never a 0 that means "no new sample" -----------------------------

def test_a_busy_process_never_reads_zero_between_its_samples(monkeypatch, host_namespace):
    """The driver stamps each process's samples at its own time: ours at 0.0, 0.4, 0.8 s, another
    tenant's at 0.2, 0.6 s. Asking only for samples newer than the last one seen gave ours 0 whenever
    the other's came in between; asking for the last second keeps ours."""
    other = 1
    gpu = fake_pynvml.a100(process_sm_util={os.getpid(): 30, other: 60},
                           process_sample_offset_s={os.getpid(): 0.0, other: 0.2})
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml.make_fake([gpu], sample_period_s=0.4))
    with nvml.NvmlSession() as session:
        values = []
        for _ in range(24):
            values.append(session.read({os.getpid()})["gpu0_process_util_percent"])
            time.sleep(0.05)
    assert values == [30.0] * len(values)


# -- GPM: how much of the GPU was busy -----------------------------------------------------------

def test_gpm_columns_on_a_hopper_gpu_and_a_reason_elsewhere(monkeypatch):
    fake = fake_pynvml.install(monkeypatch, [fake_pynvml.h100(), fake_pynvml.a100()])
    with nvml.NvmlSession() as session:
        readings = []
        for _ in range(3):
            readings.append(session.read(set()))
            time.sleep(0.02)
        assert all(math.isnan(readings[0][f"gpu0_{suffix}"]) for suffix in GPM)  # one sample: no interval yet
        assert [readings[-1][f"gpu0_{suffix}"] for suffix in GPM] == [35, 18, 9, 27]
        assert all(math.isnan(readings[-1][f"gpu1_{suffix}"]) for suffix in GPM)
        assert "Hopper" in session.column_reasons["gpu1_sm_active_percent"]
        assert session.drain_errors() == []
        assert len(fake.state.gpm_samples) == 2  # two samples, reused
    assert fake.state.gpm_samples == {}  # freed at close


def test_gpm_that_fails_every_sample_is_given_up_after_three(monkeypatch):
    """As on a vGPU guest: GPM says it is supported, then every sample fails."""
    fake = fake_pynvml.install(monkeypatch, [fake_pynvml.h100()])

    def failing(handle, sample):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    monkeypatch.setattr(fake, "nvmlGpmSampleGet", failing)
    with nvml.NvmlSession() as session:
        for _ in range(6):
            values = session.read(set())
        errors = session.drain_errors()
        assert errors.count("gpu0_sm_active_percent") == 3 and math.isnan(values["gpu0_sm_active_percent"])
        assert "3 times in a row" in session.column_reasons["gpu0_sm_active_percent"]
        assert values["gpu0_util_percent"] == 100  # the rest goes on
    assert fake.state.gpm_samples == {}


def test_gpm_is_absent_from_an_old_driver_with_a_reason(monkeypatch):
    fake_pynvml.install(monkeypatch, [fake_pynvml.h100()], driver="old")
    with nvml.NvmlSession() as session:
        values = [session.read(set()) for _ in range(2)][-1]
        assert math.isnan(values["gpu0_sm_active_percent"])
        assert "FunctionNotFound" in session.column_reasons["gpu0_sm_active_percent"]


# -- runs: the timeline, the diagnosis, the command ---------------------------------------------

def run_with_fake_gpus(monkeypatch, config: Config, gpus: list, phases: dict, hold: dict | None = None):
    """A real CPU run of the bundled model sampled against fake ``gpus``, whose readings change at
    each phase mark: ``phases = {"decode": [(device %, this process %, gpm or None) per GPU]}``."""
    folder = tempfile.mkdtemp(prefix="wk-fake-gpus-")
    for number, gpu in enumerate(gpus):
        gpu.readings_file = os.path.join(folder, f"gpu{number}.json")
        fake_pynvml.set_readings(gpu, 0, {})
    fake_pynvml.install(monkeypatch, gpus)
    mark = Sampler.mark

    def mark_and_switch(sampler, label):
        for gpu, (device, own, gpm) in zip(gpus, phases.get(label, ())):
            fake_pynvml.set_readings(gpu, device, {os.getpid(): own} if own else {}, gpm=gpm)
        mark(sampler, label)
        time.sleep((hold or {}).get(label, 0.0))

    monkeypatch.setattr(Sampler, "mark", mark_and_switch)
    return wk.run(wk.sample_path("aesop_03"), config, interval=0.05, progress=False)


def on_gpu(run, nvml_index: int):
    """``run`` as if its model had run on CUDA, on NVML GPU ``nvml_index`` (its timeline as recorded)."""
    import dataclasses

    config = {**run.transcript.config, "device": "cuda", "compute_type": "float16"}
    environment = {**run.environment, "model_gpu": {"cuda_index": 0, "nvml_index": nvml_index, "how": "test"}}
    return dataclasses.replace(run, transcript=dataclasses.replace(run.transcript, config=config),
                               config=run.config.replace(device="cuda"), environment=environment)


def test_a_busy_gpu_with_idle_sms_is_diagnosed_and_plotted(monkeypatch, tmp_path):
    """100 % utilization with 35 % of the SMs active during decode: not really busy."""
    idle = fake_pynvml._gpm_readings(sm_active=0.0, occupancy=0.0, tensor=0.0, dram=1.0)
    busy = fake_pynvml._gpm_readings(sm_active=35.0, occupancy=18.0, tensor=9.0, dram=27.0)
    run = run_with_fake_gpus(monkeypatch, Config(mode="sequential", device="cpu"), [fake_pynvml.h100()],
                             {"load": [(0, 0, idle)], "prepare": [(0, 0, idle)], "decode": [(100, 100, busy)]},
                             hold={"decode": 0.4})
    assert run.transcript.text.startswith("A crew, half dead with thirst")
    finding = next(f for f in diagnose(on_gpu(run, 0)) if f.code == "sms-mostly-idle")
    assert "read 100 % busy" in finding.title and "35 %" in finding.title and "not really busy" in finding.title
    assert "SM occupancy 18 %" in finding.evidence and "batch" in finding.what_to_do
    fig = plots.timeline(run)
    columns = {trace.meta["column"] for trace in fig.data}
    assert {f"gpu0_{suffix}" for suffix in GPM} <= columns
    assert any("GPU SMs (GPM)" in (a.text or "") for a in fig.layout.annotations)
    page = open(wk.report(on_gpu(run, 0), tmp_path / "report.html"), encoding="utf-8").read()
    assert "GPU SMs (GPM)" in page and "sms-mostly-idle" in page  # the report embeds the figure and the finding
    lower = run.timeline.copy()
    lower["gpu0_sm_active_percent"] = 90.0
    import dataclasses

    assert "sms-mostly-idle" not in [f.code for f in diagnose(on_gpu(dataclasses.replace(run, utilization=dataclasses.replace(run.utilization, timeline=lower)), 0))]


def test_a_gpu_without_gpm_says_why_under_the_timeline(monkeypatch):
    run = run_with_fake_gpus(monkeypatch, Config(mode="sequential", device="cpu"), [fake_pynvml.a100()], {})
    assert "Hopper" in run.utilization.column_reasons["gpu0_sm_active_percent"]
    fig = plots.timeline(run)
    notes = [a.text.replace("<br>", " ") for a in fig.layout.annotations if a.name == "no-gpm-note"]
    assert notes and "GPU 0: GPM not supported" in notes[0]
    assert not any(trace.meta["column"].endswith(GPM) for trace in fig.data)


def test_diagnose_of_a_two_gpu_run_judges_the_models_gpu(monkeypatch, tmp_path, cli):
    """The model's GPU 0 idles through decode while another job keeps GPU 1 at 95 %: the diagnosis
    says GPU 0 was idle, and says nothing of another process on GPU 1 (which the model never used)."""
    run = run_with_fake_gpus(monkeypatch, Config(mode="sequential", device="cpu"),
                             [fake_pynvml.a100(), fake_pynvml.rtx3090()],
                             {"load": [(0, 0, None), (95, 0, None)], "prepare": [(0, 0, None), (95, 0, None)],
                              "decode": [(3, 3, None), (95, 0, None)]})
    run = on_gpu(run, 0)
    assert run.timeline["gpu1_util_percent"].max() == 95
    folder = wk.save(run, tmp_path / "run")
    result = cli("diagnose", folder)
    assert result.returncode == 0, result.stderr
    assert "[gpu-idle-decode]" in result.stdout and "other-process-on-gpu" not in result.stdout
    assert "gpu1" not in result.stdout and "GPU 1" not in result.stdout  # judged on the model's GPU only


def test_a_patched_library_without_symbols_or_v2_structs_still_samples(monkeypatch):
    """As under a simulator that patches pynvml's functions: no symbol can be looked up, and the
    memory call answers a v1 struct whatever version is asked for. No sample is lost."""
    fake = fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={os.getpid(): 30})])

    def nothing(symbol):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def v1_only(handle, version=None):
        return pynvml.c_nvmlMemory_t(total=40 * 2**30, free=36 * 2**30, used=4 * 2**30)

    monkeypatch.setattr(fake, "_nvmlGetFunctionPointer", nothing)
    monkeypatch.setattr(fake, "nvmlDeviceGetMemoryInfo", v1_only)
    with nvml.NvmlSession() as session:
        assert gpu_processes.process_list_api(fake) is None  # pynvml's own function is used
        values = [session.read({os.getpid()}) for _ in range(2)][-1]
        assert values["gpu0_mem_used_mb"] == 4096 and math.isnan(values["gpu0_mem_reserved_mb"])
        assert values["gpu0_process_util_percent"] == 30
        assert session.drain_errors() == []
