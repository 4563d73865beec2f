"""Per-process GPU utilization against the fake pynvml: the watched tree's newest samples over the
last second, and never a false 0 (PID namespaces, another tenant, a process that stopped)."""

from __future__ import annotations

import math
import os
import sys
import time

import pytest

from whisperkit.measure import gpu_processes, nvml
from whisperkit.measure.sampler import Sampler

try:
    from tests import fake_pynvml
except ImportError:  # run from inside tests/
    import fake_pynvml


HOST_PID = 3_999_917  # a PID as the host numbers it: no such process in this namespace


@pytest.fixture
def in_a_container(monkeypatch, tmp_path):
    """This process in a PID namespace of its own: /proc/self/ns/pid is not the host's (a file
    stands in for it, whose inode is not PROC_PID_INIT_INO)."""
    namespace = tmp_path / "pid"
    namespace.write_text("")
    monkeypatch.setattr(gpu_processes, "PID_NAMESPACE_PATH", str(namespace))


@pytest.fixture
def host_namespace(monkeypatch):
    """This process in the host's PID namespace, wherever the tests run."""
    monkeypatch.setattr(gpu_processes, "pid_namespace", lambda path=None: "host")


def test_pid_namespace_depth_reads_nspid(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nNSpid:\t812\t7\t1\n")
    assert gpu_processes.pid_namespace_depth(str(status)) == 3
    assert gpu_processes.pid_namespace_depth(str(tmp_path / "missing")) == 1  # not Linux: assume none


def test_the_pid_namespace_is_told_by_its_inode(tmp_path):
    other = tmp_path / "pid"
    other.write_text("")
    assert gpu_processes.pid_namespace(str(other)) == "nested"
    if os.path.exists("/proc/self/ns/pid"):
        host = os.stat("/proc/self/ns/pid").st_ino == 0xEFFFFFFC
        assert gpu_processes.pid_namespace() == ("host" if host else "nested")


def test_in_a_pid_namespace_process_util_is_nan_with_the_reason(monkeypatch, in_a_container):
    # the driver reports this process under its host PID, which psutil never shows
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={HOST_PID: 40})])
    with nvml.NvmlSession() as session:
        values = [session.read({os.getpid()}) for _ in range(3)]
        assert all(math.isnan(v["gpu0_process_util_percent"]) for v in values)
        assert "PID namespace" in session.process_util_reason and "host process ids" in session.process_util_reason
        assert values[-1]["gpu0_util_percent"] == 87  # the device-wide readings go on
        assert session.drain_errors() == []


def test_in_a_container_whose_pids_overlap_the_hosts_process_util_is_nan_not_zero(monkeypatch, in_a_container):
    """Inside Docker /proc is the container's, so NSpid lists one PID and looks like the host; NVML's
    host PIDs (1 and this process's parent) exist here too, but none is ours: unknown, not 0."""
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={1: 70, os.getppid(): 20})])
    with nvml.NvmlSession() as session:
        values = [session.read({os.getpid()})["gpu0_process_util_percent"] for _ in range(3)]
        assert all(math.isnan(v) for v in values), values
        assert "PID namespace" in session.process_util_reason


def test_in_a_pid_namespace_that_nvml_matches_process_util_is_read(monkeypatch, in_a_container):
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={os.getpid(): 40})])
    with nvml.NvmlSession() as session:
        assert session.read({os.getpid()})["gpu0_process_util_percent"] == 40
        assert session.process_util_reason is None


def test_nvml_pids_that_do_not_exist_here_mean_nan_not_zero(monkeypatch, host_namespace):
    """The host's PID namespace as far as this process can tell, but the busy GPU's compute
    processes are not this machine's PIDs."""
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={HOST_PID: 55})])
    with nvml.NvmlSession() as session:
        values = [session.read({os.getpid()})["gpu0_process_util_percent"] for _ in range(3)]
    assert all(math.isnan(v) for v in values)
    assert str(HOST_PID) in session.process_util_reason and "cannot be matched" in session.process_util_reason


def test_a_reason_reaches_the_sampler(monkeypatch):
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={HOST_PID: 55})])
    with Sampler(interval=0.05) as sampler:
        time.sleep(0.3)
    assert sampler.timeline["gpu0_process_util_percent"].isna().all()
    assert "cannot be matched" in sampler.process_gpu_unavailable_reason or \
        "PID namespace" in sampler.process_gpu_unavailable_reason


def test_another_tenants_process_is_a_true_zero_for_ours(monkeypatch, host_namespace):
    """NVML lists a process that exists here (PID 1), not ours: ours really used 0 %."""
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={1: 70})])
    with nvml.NvmlSession() as session:
        assert session.read({os.getpid()})["gpu0_process_util_percent"] == 0
        assert session.process_util_reason is None


def test_the_newest_sample_of_each_process_counts(monkeypatch):
    """NVML returns several samples per process, each with its own timestamp, in no set order."""
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(process_sm_util={os.getpid(): [10, 20, 35]})])
    with nvml.NvmlSession() as session:
        assert session.read({os.getpid()})["gpu0_process_util_percent"] == 35


def test_empty_process_lists_are_unknown_not_zero(monkeypatch):
    fake_pynvml.install(monkeypatch, [fake_pynvml.a100(compute_pids=[])])
    with nvml.NvmlSession() as session:
        values = session.read({os.getpid()})
        assert math.isnan(values["gpu0_process_util_percent"]) and session.process_util_reason is None
        assert session.drain_errors() == []


def test_process_util_of_a_process_that_stopped_reads_zero_after_the_lookback(monkeypatch, host_namespace):
    """Each read asks for the samples of the last LOOKBACK_S: a process that stops keeps its last
    value that long (its sample is still in the driver's buffer), then reads 0."""
    gpu = fake_pynvml.a100(process_sm_util={os.getpid(): 64})
    fake = fake_pynvml.make_fake([gpu], sample_period_s=0.01)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(gpu_processes, "LOOKBACK_S", 0.2)
    pids = {os.getpid()}
    with nvml.NvmlSession() as session:
        assert session.read(pids)["gpu0_process_util_percent"] == 64
        gpu.process_sm_util.clear()  # the process stops launching kernels
        assert session.read(pids)["gpu0_process_util_percent"] == 64  # its last sample is within the lookback
        time.sleep(0.25)
        assert session.read(pids)["gpu0_process_util_percent"] == 0
        gpu.process_sm_util[12345] = 90  # someone else's process: ours still 0
        time.sleep(0.02)
        assert session.read(pids)["gpu0_process_util_percent"] == 0
        assert session.drain_errors() == []
