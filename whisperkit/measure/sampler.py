"""Background sampler of CPU, memory and NVIDIA GPU utilization, with phase marks.

>>> import whisperkit as wk
>>> with wk.Sampler(interval=0.1) as s:       # doctest: +SKIP
...     s.mark("load"); ...; s.mark("transcribe"); ...
>>> s.timeline.head()                          # doctest: +SKIP   one row per sample
>>> s.summary().loc["transcribe"]              # doctest: +SKIP   mean, p50, p95, max per metric

How sampling works
------------------
A daemon thread takes a sample at ``t0 + k * interval`` on the monotonic clock (no drift; if a
sample overruns, the missed slots are skipped rather than taken in a burst) and sleeps in
``threading.Event.wait``. One sample is taken at start and one at stop, in the caller's thread.
Each sample is a few cheap psutil and NVML calls appended as a dict to a list; the pandas
DataFrame is built only when :attr:`Sampler.timeline` is read.

CPU percentages are computed from the change of CPU times since the previous sample, so the first
sample (taken at start, which primes the counters) has NaN in every CPU column. Linux counts CPU
time in ticks of 10 ms: at a 0.1 s interval a single reading is accurate to about ±10 % of a core,
and a sample less than 20 ms after the previous one (often the last one, taken at stop) has NaN
CPU values rather than a reading made of one tick or none.

Timeline columns (units in the names; MiB for ``_mb``; a value that could not be read is NaN):

- ``time_s``: seconds since start (monotonic clock).
- ``cpu_percent``: whole machine, mean over all cores, 0-100; ``cpu{i}_percent`` per core.
- ``process_cpu_percent``: the watched process and all its descendants (found again at every
  sample, or every second for the sampler's own process), as a share of ALL cores, 0-100 (psutil's per-process percent divided by the core count).
  A child that exits between two samples loses the CPU time of its last partial interval.
- ``process_rss_mb``: resident memory of that process tree (pages shared between the processes
  are counted once per process).
- ``mem_used_percent``: the machine's memory in use, percent.
- per NVIDIA GPU ``i`` (NVML numbering, which ignores ``CUDA_VISIBLE_DEVICES``):
  ``gpu{i}_util_percent``, ``gpu{i}_mem_util_percent``, ``gpu{i}_mem_used_mb``,
  ``gpu{i}_mem_total_mb``, ``gpu{i}_power_w``, ``gpu{i}_sm_clock_mhz``, ``gpu{i}_temperature_c``,
  ``gpu{i}_process_util_percent``.

Cost
----
At 10 Hz on a 2-core machine a sample costs about 0.6 ms of CPU plus about 0.8 ms for finding the
watched tree's descendants (psutil reads ``/proc/<pid>/stat`` of every process on the machine).
Each of those file reads releases the GIL, and while a pure-Python loop in the same interpreter
holds it, every re-acquisition waits up to 5 ms: one rescan then takes about 0.25 s. So when the
sampler watches its own process (the default) it looks for new children at most once a second
(:data:`SELF_TREE_RESCAN_S`); a child found late has all its CPU time counted in the sample that
finds it. Watching another process (``whisperkit monitor -- COMMAND``) shares no GIL with it, and
its tree is found again at every sample.

What NVML's utilization means
-----------------------------
``gpu{i}_util_percent`` (``nvmlDeviceGetUtilizationRates().gpu``) is the percent of time, over the
driver's last sample period, during which at least one kernel was running. That period is between
1/6 s and 1 s depending on the product, so sampling faster than it repeats the same value.
"100 %" does not mean every streaming multiprocessor (SM) is busy: one small kernel on one SM
reads 100 %. ``gpu{i}_mem_util_percent`` is likewise the share of the period during which device
memory was read or written. On Hopper and newer GPUs the GPM metrics (``NVML_GPM_METRIC_SM_UTIL``,
``NVML_GPM_METRIC_SM_OCCUPANCY``) measure the share of SMs actually busy; they are the better
measure and are not implemented here.

``gpu{i}_process_util_percent`` sums the newest ``smUtil`` from
``nvmlDeviceGetProcessUtilization`` over the watched process tree. ``NVMLError_NotFound`` (no
new samples) repeats the previous value for up to one driver period (1 s), then reads 0 if the
device has reported per-process samples before, and NaN if it never has (see
:meth:`whisperkit.measure.nvml.NvmlSession._process_util`).

GPU values NVML does not support are NaN and are not asked again; failed queries are NaN for that
sample and counted in the ``errors`` column of :meth:`Sampler.summary`; a lost GPU reads NaN from
then on while the other GPUs and the CPU go on being sampled.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time

from whisperkit.errors import ConfigError

NaN = math.nan
MIB = 2**20
#: The shortest sampling interval accepted (seconds): 100 samples a second. Shorter ones only
#: burn a core in the sampling thread and grow the timeline without bound.
MIN_INTERVAL_S = 0.01
#: CPU times advance in clock ticks (10 ms on Linux): a CPU reading needs at least this many
#: seconds since the previous one, else it is NaN and the older baseline is kept.
MIN_CPU_WINDOW_S = 0.02
#: When the sampler watches its own process, its children are found again at most this often
#: (seconds); other processes' trees are found again at every sample. See "Cost" above.
SELF_TREE_RESCAN_S = 1.0
#: phase name of the samples taken before the first mark
START_PHASE = "start"


_log = logging.getLogger(__name__)


class _SystemCpu:
    """Per-core busy percent between two calls, from ``psutil.cpu_times(percpu=True)``."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._last = None
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


class _ProcessTree:
    """CPU percent (of all cores) and RSS (MiB) of a process and its descendants."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._psutil = psutil
        try:
            self._root = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise ConfigError(f"cannot watch process {pid}: no such process") from None
        self._cores = psutil.cpu_count() or 1
        self._rescan_s = SELF_TREE_RESCAN_S if pid == os.getpid() else 0.0
        self._children: list = []
        self._scanned_at: float | None = None
        self._last_cpu: dict[tuple[int, float], float] = {}
        self._last_time: float | None = None
        self.pids: set[int] = {pid}
        self.errors: list[str] = []

    def read(self, now: float) -> tuple[float, float]:
        """``(cpu_percent, rss_mb)`` at monotonic time ``now``; cpu is NaN on the first call."""
        psutil = self._psutil
        if self._scanned_at is None or now - self._scanned_at >= self._rescan_s:
            try:
                self._children = self._root.children(recursive=True)
            except psutil.NoSuchProcess:
                return self._gone()
            except (psutil.Error, OSError):
                self.errors.append("process_cpu_percent")
                self._children = []
            self._scanned_at = now
        processes = [self._root, *self._children]
        cpu: dict[tuple[int, float], float] = {}
        rss = 0
        for process in processes:
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


class Sampler:
    """Sample CPU, memory and GPU utilization every ``interval`` seconds on a background thread.

    ``pid`` is the process whose tree (itself and its descendants) fills the ``process_*`` and
    ``gpu{i}_process_util_percent`` columns (default: this process). ``gpus=False`` skips NVML.
    A Sampler runs once: create a new one for another run.

    >>> with Sampler(interval=0.1) as s:    # doctest: +SKIP
    ...     s.mark("busy"); sum(range(10**7))
    >>> s.summary().loc[("busy", "process_cpu_percent"), "mean"]   # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.5, pid: int | None = None, gpus: bool = True) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
                or not math.isfinite(interval) or interval < MIN_INTERVAL_S:
            raise ConfigError(f"sampling interval must be a number of seconds of at least {MIN_INTERVAL_S}, "
                              f"got {interval!r}")
        self.interval = float(interval)
        self.pid = os.getpid() if pid is None else int(pid)
        self.gpus = bool(gpus)
        #: False until started, and when NVML cannot be used; then see gpu_unavailable_reason.
        self.gpu_available = False
        self.gpu_unavailable_reason: str | None = None
        #: CPU seconds the background thread itself used (set when it ends).
        self.thread_cpu_s = NaN
        self._state = "new"  # new -> running -> stopped
        self._state_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self._columns: list[str] = []
        self._records: list[dict] = []
        self._marks: list[tuple[float, str]] = []
        self._errors: list[tuple[float, str]] = []  # (time_s, column) per failed query
        self._cpu: _SystemCpu | None = None
        self._tree: _ProcessTree | None = None
        self._nvml = None
        self._frame_cache = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Sampler:
        """Take the first sample and start the background thread. Raises RuntimeError if run before."""
        with self._state_lock:
            if self._state != "new":
                raise RuntimeError("this Sampler has already been started; create a new Sampler for another run")
            self._state = "starting"
        try:
            self._open_probes()
        except BaseException:
            self._close_nvml()
            self._state = "stopped"
            raise
        self._t0 = time.monotonic()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="whisperkit-sampler", daemon=True)
        self._state = "running"
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and join the thread, then take the last sample. Calling it again does nothing."""
        with self._state_lock:
            if self._state != "running":
                return
            self._state = "stopping"
        try:
            self._stop_event.set()
            self._thread.join()
            self._sample()
        finally:
            self._close_nvml()
            self._state = "stopped"

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._state == "running"

    def mark(self, label: str) -> None:
        """Start a phase named ``label`` now; samples until the next mark belong to it."""
        if self._t0 is None:
            raise RuntimeError("mark() needs a started Sampler: use 'with Sampler() as s:' or call start() first")
        self._marks.append((time.monotonic() - self._t0, str(label)))

    # -- sampling ----------------------------------------------------------------------------

    def _open_probes(self) -> None:
        from whisperkit.measure import nvml

        self._tree = _ProcessTree(self.pid)
        self._cpu = _SystemCpu()
        if self.gpus:
            self._nvml = nvml.NvmlSession()
            self.gpu_available = self._nvml.available
            if not self.gpu_available:
                self.gpu_unavailable_reason = f"{self._nvml.reason}; recording CPU only"
                self._close_nvml()
        else:
            self.gpu_unavailable_reason = "GPU sampling turned off (gpus=False); recording CPU only"
        self._columns = [
            "time_s", "cpu_percent", *(f"cpu{i}_percent" for i in range(self._cpu.cores)),
            "process_cpu_percent", "process_rss_mb", "mem_used_percent",
            *(self._nvml.column_names() if self._nvml is not None else ()),
        ]

    def _close_nvml(self) -> None:
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    def _run(self) -> None:
        """Thread body: sample at t0 + k * interval until stopped, skipping slots that passed."""
        cpu_start = time.thread_time()
        slot = 1
        try:
            while not self._stop_event.wait(max(0.0, self._t0 + slot * self.interval - time.monotonic())):
                self._sample()
                elapsed = time.monotonic() - self._t0
                slot = max(slot + 1, math.floor(elapsed / self.interval) + 1)
        finally:
            self.thread_cpu_s = time.thread_time() - cpu_start

    def _sample(self) -> None:
        now = time.monotonic()
        time_s = now - self._t0
        try:
            record = self._read(now, time_s)
        except Exception:  # a bug must not kill the thread: lose this sample, say so once
            if not any(column == "sample" for _, column in self._errors):
                _log.exception("whisperkit sampler: a sample failed")
            self._errors.append((time_s, "sample"))
            return
        self._records.append(record)

    def _read(self, now: float, time_s: float) -> dict:
        cores = self._cpu.read(now)
        process_cpu, process_rss = self._tree.read(now)
        record = {"time_s": time_s, "cpu_percent": sum(cores) / len(cores)}
        for i, value in enumerate(cores):
            record[f"cpu{i}_percent"] = value
        record["process_cpu_percent"] = process_cpu
        record["process_rss_mb"] = process_rss
        record["mem_used_percent"] = self._cpu.memory_used_percent()
        errors = self._tree.errors
        if self._nvml is not None:
            record.update(self._nvml.read(self._tree.pids))
            errors = errors + self._nvml.drain_errors()
        self._tree.errors = []
        self._errors.extend((time_s, column) for column in errors)
        return record

    # -- results -----------------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """Timeline column names (known once started)."""
        return list(self._columns)

    def samples(self, start: int = 0) -> list[dict]:
        """The raw samples from index ``start`` on, as dicts of column -> value (cheap; no pandas)."""
        return self._records[start:]

    @property
    def timeline(self):
        """pandas DataFrame, one row per sample, columns as in the module docstring."""
        return self._frame().copy()

    @property
    def marks(self):
        """pandas DataFrame of the marks: ``time_s`` (seconds since start) and ``label``."""
        import pandas as pd

        marks = list(self._marks)
        return pd.DataFrame({"time_s": [t for t, _ in marks], "label": [label for _, label in marks]},
                            columns=["time_s", "label"])

    @property
    def errors(self) -> dict[str, int]:
        """Failed queries per column over the whole run (NaN was recorded for them)."""
        counts: dict[str, int] = {}
        for _, column in list(self._errors):
            counts[column] = counts.get(column, 0) + 1
        return counts

    def phases(self, times_s) -> list[str]:
        """Phase of each time (seconds since start): the label of the last mark at or before it."""
        import bisect

        mark_times = [t for t, _ in self._marks]
        labels = [label for _, label in self._marks]
        phases = []
        for t in times_s:
            i = bisect.bisect_right(mark_times, t)
            phases.append(labels[i - 1] if i else START_PHASE)
        return phases

    def summary(self):
        """pandas DataFrame indexed by (phase, metric) with ``samples`` (non-NaN readings),
        ``mean``, ``p50``, ``p95``, ``max`` and ``errors`` (failed queries).

        Phase ``"all"`` is the whole run, then ``"start"`` (before the first mark, if it has
        samples) and every mark label in order; a label used twice is one phase.
        """
        import pandas as pd

        frame = self._frame()
        metrics = [c for c in frame.columns if c != "time_s"]
        phase_of_sample = pd.Series(self.phases(frame["time_s"]), index=frame.index, dtype=object)
        errors = list(self._errors)
        phase_of_error = self.phases([t for t, _ in errors])
        order = ["all", *dict.fromkeys([*phase_of_sample, *(label for _, label in self._marks)])]
        rows = []
        for phase in order:
            part = frame if phase == "all" else frame[phase_of_sample == phase]
            failed: dict[str, int] = {}
            for (_, column), error_phase in zip(errors, phase_of_error):
                if phase == "all" or error_phase == phase:
                    failed[column] = failed.get(column, 0) + 1
            for metric in metrics:
                values = part[metric]
                rows.append({
                    "phase": phase, "metric": metric, "samples": int(values.count()),
                    "mean": values.mean(), "p50": values.median(), "p95": values.quantile(0.95),
                    "max": values.max(), "errors": failed.get(metric, 0),
                })
        columns = ["phase", "metric", "samples", "mean", "p50", "p95", "max", "errors"]
        return pd.DataFrame(rows, columns=columns).set_index(["phase", "metric"])

    def _frame(self):
        import pandas as pd

        records = self._records[:]
        cached = self._frame_cache
        if cached is not None and len(cached) == len(records):
            return cached
        frame = pd.DataFrame.from_records(records, columns=self._columns or ["time_s"])
        frame = frame.astype("float64")
        self._frame_cache = frame
        return frame

    def __repr__(self) -> str:
        return (f"Sampler(interval={self.interval}, pid={self.pid}, gpus={self.gpus}) "
                f"[{self._state}, {len(self._records)} samples]")
