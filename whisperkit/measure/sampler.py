"""Background sampler of CPU, memory and NVIDIA GPU utilization, with phase marks.

>>> import whisperkit as wk
>>> with wk.Sampler(interval=0.1) as s:       # doctest: +SKIP
...     s.mark("load"); ...; s.mark("transcribe"); ...
>>> s.timeline.head()                          # doctest: +SKIP   one row per sample
>>> s.summary().loc["transcribe"]              # doctest: +SKIP   mean, p50, p95, max per metric

How sampling works
------------------
Samples are taken in a separate process (:mod:`whisperkit.measure.sampler_process`, spawned with
``subprocess``, never forked), so the code being watched cannot starve it: a pure-Python loop
holding the GIL no longer delays or drops samples (a sampler thread in the same interpreter
delivered 27 to 38 of 45 samples at 10 Hz while the main thread spun and every core was busy;
the process delivers 43 or more, see ``benchmarks/sampler_overhead.py``). The
process samples at ``t0 + k * interval`` on the monotonic clock (no drift; a slot that passed
is skipped rather than taken in a burst), one sample at start and one at stop, and streams each
one back over a pipe, where a reader thread appends it to a list; the pandas DataFrame is built
only when :attr:`Sampler.timeline` is read. CLOCK_MONOTONIC is system-wide, so :meth:`Sampler.mark`
in this process lines up with the samples. Starting costs one Python start-up (0.2 to 0.6 s).
Stopping (or leaving the ``with`` block, also by Ctrl-C or an exception) ends the process; if this
process dies, the sampling process sees its pipe close and ends too.

CPU percentages are computed from the change of CPU times since the previous sample, so the first
sample (taken at start, which primes the counters) has NaN in every CPU column. Linux counts CPU
time in ticks of 10 ms: at a 0.1 s interval a single reading is accurate to about ±10 % of a core,
and a sample less than 20 ms after the previous one (often the last one, taken at stop) has NaN
CPU values rather than a reading made of one tick or none.

Timeline columns (units in the names; MiB for ``_mb``; a value that could not be read is NaN):

- ``time_s``: seconds since start (monotonic clock).
- ``cpu_percent``: whole machine, mean over all cores, 0-100; ``cpu{i}_percent`` per core.
- ``process_cpu_percent``: the watched process and all its descendants but the sampling process
  (found again every second, or less often where that would cost more than 0.3 % of a core), as a share of ALL cores, 0-100 (psutil's per-process percent divided
  by the core count). A child that exits between two samples loses the CPU time of its last
  partial interval; one found late has all its CPU time counted in the sample that finds it.
- ``process_rss_mb``: resident memory of that process tree (pages shared between the processes
  are counted once per process).
- ``mem_used_percent``: the machine's memory in use, percent.
- per NVIDIA GPU ``i`` (NVML numbering, which ignores ``CUDA_VISIBLE_DEVICES``):
  ``gpu{i}_util_percent``, ``gpu{i}_mem_util_percent``, ``gpu{i}_mem_used_mb``,
  ``gpu{i}_mem_total_mb``, ``gpu{i}_power_w``, ``gpu{i}_sm_clock_mhz``, ``gpu{i}_temperature_c``,
  ``gpu{i}_process_util_percent``, ``gpu{i}_energy_j`` (NVML's total energy counter in joules,
  Volta and newer; NaN where unsupported: the difference of two readings is the energy between them),
  ``gpu{i}_mem_reserved_mb`` (the driver's own reservation, which ``mem_used_mb`` leaves out, see
  :mod:`whisperkit.measure.gpu_memory`), and the GPM columns ``gpu{i}_sm_active_percent``,
  ``gpu{i}_sm_occupancy_percent``, ``gpu{i}_tensor_active_percent`` and ``gpu{i}_dram_bw_percent``
  (Hopper and newer; see :mod:`whisperkit.measure.gpm`). On a GPU in MIG mode the memory and GPM
  columns are the model's MIG instance's (CUDA device ``cuda_index``): :attr:`Sampler.mig_instances`.

Cost
----
Measured with ``benchmarks/sampler_overhead.py``: the sampling process uses well under 1 % of one
core at 10 Hz once started (a sample is a few psutil and NVML calls, about 0.5 ms of CPU; the
watched tree's descendants are found again once a second, see
:data:`whisperkit.measure.probes.TREE_RESCAN_S`). :attr:`Sampler.thread_cpu_s` is its CPU time
while sampling (start-up excluded).

What NVML's utilization means
-----------------------------
``gpu{i}_util_percent`` (``nvmlDeviceGetUtilizationRates().gpu``) is the percent of time, over the
driver's last sample period, during which at least one kernel was running. That period is between
1/6 s and 1 s depending on the product, so sampling faster than it repeats the same value.
"100 %" does not mean every streaming multiprocessor (SM) is busy: one small kernel on one SM
reads 100 %. ``gpu{i}_mem_util_percent`` is likewise the share of the period during which device
memory was read or written. On Hopper and newer GPUs the GPM columns say more:
``gpu{i}_sm_active_percent`` is the percentage of SMs that were busy and
``gpu{i}_sm_occupancy_percent`` the percentage of warps active against the theoretical maximum
(NVML's definitions), over the time since the previous sample.

``gpu{i}_process_util_percent`` sums the newest ``smUtil`` from
``nvmlDeviceGetProcessUtilization`` over the watched process tree, asked for the last second on
every sample: a watched process with no sample in it ran no kernel for a whole driver period
(0). It is NaN until it can be trusted: the device has reported per-process samples, and this
process is in the host's PID namespace or a watched PID has been seen among NVML's (inside a
container NVML reports host PIDs); :attr:`Sampler.process_gpu_unavailable_reason` then says why
(see :mod:`whisperkit.measure.gpu_processes`). It is never a false 0.

GPU values NVML will never give (NotSupported, NoPermission, a function the driver lacks) are NaN,
not asked again, and not errors: :attr:`Sampler.column_reasons` says why, once per column. Failed
queries are NaN for that sample and counted in the ``errors`` column of :meth:`Sampler.summary`;
a lost GPU reads NaN from then on while the other GPUs and the CPU go on being sampled.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from whisperkit.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

NaN = math.nan
#: The shortest sampling interval accepted (seconds): 100 samples a second. Shorter ones only
#: burn a core in the sampling process and grow the timeline without bound.
MIN_INTERVAL_S = 0.01
#: phase name of the samples taken before the first mark
START_PHASE = "start"
#: seconds to wait for the sampling process to start, and to finish after stop
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

_log = logging.getLogger(__name__)


class Sampler:
    """Sample CPU, memory and GPU utilization every ``interval`` seconds in a separate process.

    ``pid`` is the process whose tree (itself and its descendants) fills the ``process_*`` and
    ``gpu{i}_process_util_percent`` columns (default: this process). ``gpus=False`` skips NVML.
    ``cuda_index`` is the CUDA device of the model: on a GPU in MIG mode its MIG instance is sampled.
    A Sampler runs once: create a new one for another run.

    >>> with Sampler(interval=0.1) as s:    # doctest: +SKIP
    ...     s.mark("busy"); sum(range(10**7))
    >>> s.summary().loc[("busy", "process_cpu_percent"), "mean"]   # doctest: +SKIP
    """

    def __init__(self, interval: float = 0.5, pid: int | None = None, gpus: bool = True,
                 cuda_index: int = 0) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
                or not math.isfinite(interval) or interval < MIN_INTERVAL_S:
            raise ConfigError(f"sampling interval must be a number of seconds of at least {MIN_INTERVAL_S}, "
                              f"got {interval!r}")
        self.interval = float(interval)
        self.pid = os.getpid() if pid is None else int(pid)
        self.gpus = bool(gpus)
        self.cuda_index = int(cuda_index)
        #: False until started, and when NVML cannot be used; then see gpu_unavailable_reason.
        self.gpu_available = False
        self.gpu_unavailable_reason: str | None = None
        #: why ``gpu{i}_process_util_percent`` is NaN: the watched PIDs cannot be matched to NVML's
        #: (a container's PID namespace); None while they can. Plots and reports show it.
        self.process_gpu_unavailable_reason: str | None = None
        #: column -> why it is NaN for the whole run (NotSupported, NoPermission, no GPM, ...), said once
        self.column_reasons: dict[str, str] = {}
        #: NVML index of a GPU in MIG mode -> UUID of the MIG instance whose memory and GPM were read
        self.mig_instances: dict[int, str | None] = {}
        #: CPU seconds the sampling process used after its first sample (set when it ends; start-up excluded).
        self.thread_cpu_s = NaN
        #: CPU seconds the sampling process took to start (Python, imports and the first sample).
        self.startup_cpu_s = NaN
        self._state = "new"  # new -> starting -> running -> stopping -> stopped
        self._state_lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._started = threading.Event()
        self._failure: str | None = None
        self._t0: float | None = None
        self._columns: list[str] = []
        self._records: list[dict] = []
        self._marks: list[tuple[float, str]] = []
        self._errors: list[tuple[float, str]] = []  # (time_s, column) per failed query
        self._frame_cache = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Sampler:
        """Start the sampling process and wait for its first sample. Raises RuntimeError if run before."""
        import psutil

        with self._state_lock:
            if self._state != "new":
                raise RuntimeError("this Sampler has already been started; create a new Sampler for another run")
            self._state = "starting"
        try:
            if not psutil.pid_exists(self.pid):
                raise ConfigError(f"cannot watch process {self.pid}: no such process")
            self._spawn()
            if not self._started.wait(START_TIMEOUT_S) or self._failure is not None:
                raise RuntimeError(f"the sampling process did not start: {self._failure or 'no answer'}")
        except BaseException:
            self._end_process()
            self._state = "stopped"
            raise
        self._state = "running"
        return self

    def stop(self) -> None:
        """Take the last sample and end the sampling process. Calling it again does nothing."""
        with self._state_lock:
            if self._state != "running":
                return
            self._state = "stopping"
        try:
            self._end_process()
        finally:
            self._state = "stopped"

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._state == "running"

    def mark(self, label: str, at: float | None = None) -> None:
        """Start a phase named ``label`` now (or at ``at``, a ``time.monotonic()`` reading);
        samples until the next mark belong to it."""
        if self._t0 is None:
            raise RuntimeError("mark() needs a started Sampler: use 'with Sampler() as s:' or call start() first")
        self._marks.append(((time.monotonic() if at is None else at) - self._t0, str(label)))

    # -- the sampling process ----------------------------------------------------------------

    def _spawn(self) -> None:
        settings = json.dumps({"pid": self.pid, "interval": self.interval, "gpus": self.gpus,
                               "cuda_index": self.cuda_index})
        paths = [path or os.getcwd() for path in sys.path]  # what this interpreter can import
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "whisperkit.measure.sampler_process", settings],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, encoding="utf-8",
            close_fds=True,
        )
        self._reader = threading.Thread(target=self._read_messages, name="whisperkit-sampler-reader", daemon=True)
        self._reader.start()

    def _read_messages(self) -> None:
        """Reader thread: append the process's samples as they arrive, until it ends."""
        assert self._process is not None and self._process.stdout is not None
        try:
            for line in self._process.stdout:
                self._receive(json.loads(line))
        except (OSError, ValueError) as error:
            self._failure = self._failure or f"lost the sampling process's messages ({error})"
        finally:
            self._started.set()  # never leave start() waiting

    def _receive(self, message: dict) -> None:
        if "sample" in message:
            record = dict(zip(self._columns, (NaN if v is None else v for v in message["sample"])))
            self._records.append(record)
            self._errors.extend((record["time_s"], column) for column in message["errors"])
        elif "errors" in message:
            self._errors.extend((message.get("time_s", NaN), column) for column in message["errors"])
        if "process_util_reason" in message:
            self.process_gpu_unavailable_reason = message["process_util_reason"]
        if "column_reasons" in message:
            self.column_reasons = dict(message["column_reasons"])
        if "started" in message:
            started = message["started"]
            self._columns = list(started["columns"])
            self.gpu_available = bool(started["gpu_available"])
            self.gpu_unavailable_reason = started["gpu_unavailable_reason"]
            self._t0 = float(started["t0"])
            self.mig_instances = {int(i): uuid for i, uuid in started.get("mig_instances", {}).items()}
            self._started.set()
        elif "done" in message:
            self.thread_cpu_s = float(message["done"]["cpu_s"])
            self.startup_cpu_s = float(message["done"]["startup_cpu_s"])
        elif "failed" in message:
            self._failure = message["failed"]
            self._started.set()

    def _end_process(self) -> None:
        """Ask for the last sample and the end; wait for both; kill a process that does not end."""
        process = self._process
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.write("stop\n")
                process.stdin.close()
        except (OSError, ValueError):
            pass
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_S)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _log.warning("whisperkit sampler: the sampling process did not end; killing it")
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(STOP_TIMEOUT_S)
        if process.stdout is not None:
            process.stdout.close()

    # -- results -----------------------------------------------------------------------------

    @property
    def columns(self) -> list[str]:
        """Timeline column names (known once started)."""
        return list(self._columns)

    def samples(self, start: int = 0) -> list[dict]:
        """The raw samples from index ``start`` on, as dicts of column -> value (cheap; no pandas)."""
        return self._records[start:]

    @property
    def timeline(self) -> pd.DataFrame:
        """pandas DataFrame, one row per sample, columns as in the module docstring."""
        return self._frame().copy()

    @property
    def marks(self) -> pd.DataFrame:
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

    def phases(self, times_s: Iterable[float]) -> list[str]:
        """Phase of each time (seconds since start): the label of the last mark at or before it."""
        import bisect

        mark_times = [t for t, _ in self._marks]
        labels = [label for _, label in self._marks]
        phases = []
        for t in times_s:
            i = bisect.bisect_right(mark_times, t)
            phases.append(labels[i - 1] if i else START_PHASE)
        return phases

    def summary(self) -> pd.DataFrame:
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

    def _frame(self) -> pd.DataFrame:
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
