"""What one sample reads: CPU per core, the watched process tree, memory, and NVML's GPUs.

This runs in the sampler's own process (:mod:`whisperkit.measure.sampler_process`); see
:mod:`whisperkit.measure.sampler` for the columns and their meaning.
"""

from __future__ import annotations

import math
import time

from whisperkit.errors import ConfigError

NaN = math.nan
MIB = 2**20
#: CPU times advance in clock ticks (10 ms on Linux): a CPU reading needs at least this many
#: seconds since the previous one, else it is NaN and the older baseline is kept.
MIN_CPU_WINDOW_S = 0.02
#: The watched tree's descendants are found again at most this often (seconds): finding them
#: reads ``/proc/<pid>/stat`` of every process on the machine (1 to 5 ms), too dear for 10 Hz.
TREE_RESCAN_S = 1.0
#: ... and on a machine with many processes, less often still: a rescan may cost at most this
#: share of one core (the period is its CPU time divided by this).
TREE_RESCAN_SHARE = 0.003


class SystemCpu:
    """Per-core busy percent between two calls, from ``psutil.cpu_times(percpu=True)``."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._last: list[tuple[float, float]] | None = None
        self._last_time: float | None = None
        self.cores = len(psutil.cpu_times(percpu=True))

    def read(self, now: float) -> list[float]:
        """Busy percent per core since the previous reading at monotonic ``now`` (NaN at first)."""
        if self._last_time is not None and now - self._last_time < MIN_CPU_WINDOW_S:
            return [NaN] * self.cores
        times = [_busy_and_total(t) for t in self._psutil.cpu_times(percpu=True)]
        last, self._last, self._last_time = self._last, times, now
        if last is None or len(last) != len(times) or len(times) != self.cores:
            return [NaN] * self.cores
        return [_percent(busy - b0, total - t0) for (busy, total), (b0, t0) in zip(times, last)]

    def memory_used_percent(self) -> float:
        return float(self._psutil.virtual_memory().percent)


def _busy_and_total(t) -> tuple[float, float]:
    """psutil's own accounting: guest time is already in user time; iowait counts as idle."""
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def _percent(busy: float, total: float) -> float:
    if total <= 0:
        return NaN
    return min(100.0, max(0.0, 100.0 * busy / total))


class ProcessTree:
    """CPU percent (of all cores) and RSS (MiB) of a process and its descendants, leaving out
    the ``exclude`` PIDs (the sampler's own process, a child of the one it watches)."""

    def __init__(self, pid: int, exclude: frozenset[int] = frozenset(), rescan_s: float = TREE_RESCAN_S) -> None:
        import psutil

        self._psutil = psutil
        try:
            self._root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise ConfigError(f"cannot watch process {pid}: no such process") from None
        self._cores = psutil.cpu_count() or 1
        self._exclude = exclude
        self._rescan_s = rescan_s
        self._period_s = rescan_s
        self._children: list = []
        self._scanned_at: float | None = None
        self._last_cpu: dict[tuple[int, float], float] = {}
        self._last_time: float | None = None
        self.pids: set[int] = {pid}
        self.errors: list[str] = []

    def read(self, now: float) -> tuple[float, float]:
        """``(cpu_percent, rss_mb)`` at monotonic time ``now``; cpu is NaN on the first call."""
        psutil = self._psutil
        if self._scanned_at is None or now - self._scanned_at >= self._period_s:
            cpu_before = time.process_time()
            try:
                self._children = [c for c in self._root.children(recursive=True) if c.pid not in self._exclude]
            except psutil.NoSuchProcess:
                return self._gone()
            except (psutil.Error, OSError):
                self.errors.append("process_cpu_percent")
                self._children = []
            self._scanned_at = now
            self._period_s = max(self._rescan_s, (time.process_time() - cpu_before) / TREE_RESCAN_SHARE)
        cpu: dict[tuple[int, float], float] = {}
        rss = 0
        for process in [self._root, *self._children]:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    rss += process.memory_info().rss
                    cpu[(process.pid, process.create_time())] = times.user + times.system
            except psutil.NoSuchProcess:
                if process is self._root:
                    return self._gone()
            except (psutil.Error, OSError):
                self.errors += ["process_cpu_percent", "process_rss_mb"]
        self.pids = {pid for pid, _ in cpu}
        last_cpu, last_time = self._last_cpu, self._last_time
        if last_time is not None and now - last_time < MIN_CPU_WINDOW_S:
            return NaN, rss / MIB
        self._last_cpu, self._last_time = cpu, now
        if last_time is None:
            return NaN, rss / MIB
        # a process not seen before started after the previous sample: all its CPU time is new
        used = sum(seconds - last_cpu.get(key, 0.0) for key, seconds in cpu.items())
        return max(0.0, 100.0 * used / (now - last_time) / self._cores), rss / MIB

    def _gone(self) -> tuple[float, float]:
        self.pids = set()
        self._last_cpu, self._last_time = {}, None
        return NaN, NaN


class Probes:
    """Everything one sample reads. ``gpus=False`` skips NVML; where NVML cannot be used,
    ``gpu_unavailable_reason`` says why and only the CPU is read. On a GPU in MIG mode, the MIG
    instance that CUDA device ``cuda_index`` is (after ``CUDA_VISIBLE_DEVICES``) is the one whose
    memory and GPM are read; :attr:`mig_instances` names it."""

    def __init__(self, pid: int, gpus: bool = True, exclude: frozenset[int] = frozenset(),
                 cuda_index: int = 0) -> None:
        from whisperkit.measure import nvml

        self.tree = ProcessTree(pid, exclude)
        self.cpu = SystemCpu()
        self.nvml: nvml.NvmlSession | None = None
        self.gpu_unavailable_reason: str | None = None
        #: NVML index of a GPU in MIG mode -> UUID of its MIG instance that is sampled (the model's)
        self.mig_instances: dict[int, str | None] = {}
        if gpus:
            self.nvml = nvml.NvmlSession()
            if not self.nvml.available:
                self.gpu_unavailable_reason = f"{self.nvml.reason}; recording CPU only"
                self.close()
            else:
                self._sample_model_mig_instance(self.nvml, cuda_index)
        else:
            self.gpu_unavailable_reason = "GPU sampling turned off (gpus=False); recording CPU only"
        self.columns = [
            "time_s", "cpu_percent", *(f"cpu{i}_percent" for i in range(self.cpu.cores)),
            "process_cpu_percent", "process_rss_mb", "mem_used_percent",
            *(self.nvml.column_names() if self.nvml is not None else ()),
        ]

    def _sample_model_mig_instance(self, session, cuda_index: int) -> None:
        if not any(device.mig_mode for device in session.devices):
            return
        import os

        from whisperkit.measure.devices import model_target

        target, _ = model_target(session, cuda_index, os.environ)
        if target is not None and target.mig_handle is not None:
            session.sample_mig_instance(target.nvml_index, target.mig_handle, target.mig_uuid)
            self.mig_instances[target.nvml_index] = target.mig_uuid

    @property
    def gpu_available(self) -> bool:
        return self.nvml is not None

    @property
    def column_reasons(self) -> dict[str, str]:
        """Column -> why it is NaN for good (NotSupported, NoPermission, no GPM, ...)."""
        return dict(self.nvml.column_reasons) if self.nvml is not None else {}

    @property
    def process_util_reason(self) -> str | None:
        """Why per-process GPU utilization is NaN (this process's PIDs are not NVML's), else None."""
        return self.nvml.process_util_reason if self.nvml is not None else None

    def read(self, now: float, time_s: float) -> tuple[dict, list[str]]:
        """One sample at monotonic ``now`` (``time_s`` since start), and the columns whose query failed."""
        cores = self.cpu.read(now)
        process_cpu, process_rss = self.tree.read(now)
        record = {"time_s": time_s, "cpu_percent": sum(cores) / len(cores)}
        for i, value in enumerate(cores):
            record[f"cpu{i}_percent"] = value
        record["process_cpu_percent"] = process_cpu
        record["process_rss_mb"] = process_rss
        record["mem_used_percent"] = self.cpu.memory_used_percent()
        errors, self.tree.errors = self.tree.errors, []
        if self.nvml is not None:
            record.update(self.nvml.read(self.tree.pids))
            errors = errors + self.nvml.drain_errors()
        return record, errors

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml.close()
            self.nvml = None
