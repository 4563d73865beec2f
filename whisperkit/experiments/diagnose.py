"""Why was the GPU idle? Findings from a run's own measurements, most important first.

:func:`diagnose` reads a :class:`Run` (or both runs of a :class:`Comparison`): its settings,
machine, phase times and utilization timeline, and returns :class:`Finding` objects, each with
the evidence from the run and what to do. It tells apart three explanations of a low GPU
reading that look alike on a graph:

- the model was not on the GPU (``model-on-cpu``: the device setting, or CUDA not usable);
- the GPU waited on the CPU (``gpu-idle-decode`` with this process busy, ``long-cpu-prepare``);
- the meter read something else (``other-process-on-gpu``; ``sampling-faster-than-nvml``; and,
  outside any run, a Windows Task Manager graph, whose default GPU view shows the 3D and copy
  engines, not CUDA compute).

NVML's ``util_percent`` is the percent of the driver's last sample period (1/6 s to 1 s, by
product) in which any kernel ran, so a GPU that decodes continuously reads high even when its
SMs are far from full.

>>> for finding in diagnose(wk.run(wk.sample_path("aesop_03"))):   # doctest: +SKIP
...     print(finding.code)
batch-larger-than-chunks
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from whisperkit.experiments.results import Comparison, Run, Sweep

#: Finding codes, most important first: the order :func:`diagnose` returns them in.
ORDER = (
    "model-on-cpu",
    "other-process-on-gpu",
    "gpu-idle-decode",
    "sms-mostly-idle",
    "model-waited-in-corpus",
    "long-cpu-prepare",
    "language-detection-in-prepare",
    "batch-larger-than-chunks",
    "workers-over-callers",
    "threads-over-cores",
    "sampling-faster-than-nvml",
)
IDLE_UTIL_PERCENT = 10.0  # a GPU reading below this counts as idle
IDLE_SHARE = 0.5  # the decode phase is "mostly idle" above this share of idle readings
LONG_PREPARE_SHARE = 0.25  # prepare is "long" above this share of the wall time
MODEL_WAIT_PERCENT = 20.0  # a corpus run's model "waited" above this percent of the run
OTHER_PROCESS_POINTS = 10.0  # device minus this process's utilization, percentage points
NVML_SHORTEST_PERIOD_S = 1 / 6  # NVML's utilization period is 1/6 s to 1 s, by product
DEFAULT_CPU_THREADS = 4  # cpu_threads=0: CTranslate2's default intra_threads per worker (docs/parallel.md)
BUSY_UTIL_PERCENT = 80.0  # NVML utilization at or above this reads "busy" (some kernel ran most of the time)
IDLE_SMS_PERCENT = 50.0  # ... while GPM shows at most this percent of SMs active: not really busy


@dataclass
class Finding:
    """What a run shows: ``code`` (one of :data:`ORDER`), a one-line ``title``, the ``evidence``
    measured in the run, ``what_to_do`` about it, and ``run``, the label of the run it is about."""

    code: str
    title: str
    evidence: str
    what_to_do: str
    run: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def diagnose(result: Run | Comparison | Sweep | list[Run]) -> list[Finding]:
    """Findings for a Run, a Comparison (both sides), a Sweep or a list of runs, most important first."""
    from whisperkit.experiments.results import Comparison, Sweep

    if isinstance(result, Comparison):
        runs = [result.before, result.after]
    elif isinstance(result, Sweep):
        runs = list(result.runs)
    elif isinstance(result, (list, tuple)):
        runs = list(result)
    else:
        runs = [result]
    findings = [finding for run in runs for finding in diagnose_run(run)]
    return sorted(findings, key=lambda f: ORDER.index(f.code))  # stable: sides keep their order


def diagnose_run(run: Run) -> list[Finding]:
    """The findings of one run, most important first."""
    facts = _Facts(run)
    checks = (_model_on_cpu, _other_process, _gpu_idle_decode, _sms_mostly_idle, _model_waited, _long_prepare,
              _language_detection, _batch_over_chunks, _workers_over_callers, _threads_over_cores, _fast_sampling)
    findings = [finding for check in checks if (finding := check(facts)) is not None]
    for finding in findings:
        finding.run = facts.label
    return findings


def format_findings(findings: list[Finding]) -> str:
    """Findings as numbered plain-text paragraphs (what ``whisperkit diagnose`` prints)."""
    if not findings:
        return "No findings: nothing in the run points to an idle GPU, a wasted setting or a misread meter."
    lines = []
    for number, finding in enumerate(findings, start=1):
        about = f" ({finding.run})" if finding.run else ""
        lines += [f"{number}. [{finding.code}] {finding.title}{about}",
                  f"   evidence: {finding.evidence}", f"   what to do: {finding.what_to_do}"]
    return "\n".join(lines)


class _Facts:
    """What the checks read from a run, computed once."""

    def __init__(self, run) -> None:
        from whisperkit.experiments.metrics import model_gpu_index
        from whisperkit.measure.columns import gpu_column, gpu_indices

        self.run = run
        self.label = getattr(run, "label", "")
        self.used = run.transcript.config or {}
        self.device = self.used.get("device")
        self.timeline = run.timeline
        columns = [] if run.timeline is None else list(run.timeline.columns)
        # the model's GPU where the run knows it (another job's GPU says nothing about this run), else all
        model_gpu = model_gpu_index(run)
        self.gpus = [model_gpu] if model_gpu in gpu_indices(columns) else gpu_indices(columns)
        self.util = [gpu_column(i, "util_percent") for i in self.gpus]
        self.process_util = [gpu_column(i, "process_util_percent") for i in self.gpus]
        self.mem_used = [gpu_column(i, "mem_used_mb") for i in self.gpus]
        self.nvml_gpus = (run.environment or {}).get("gpus") or []
        self.cores = (run.environment or {}).get("cpu_logical_cores") or 1

    def phase(self, label: str):
        """Timeline rows of phase ``label`` (from its mark to the next), or None."""
        marks, timeline = self.run.marks, self.timeline
        if timeline is None or marks is None or len(marks) == 0:
            return None
        times = list(marks["time_s"])
        labels = list(marks["label"])
        if label not in labels:
            return None
        i = labels.index(label)
        start = float(times[i])
        end = float(times[i + 1]) if i + 1 < len(times) else float("inf")
        rows = timeline[(timeline["time_s"] >= start) & (timeline["time_s"] < end)]
        return rows if len(rows) else None

    def transcription(self):
        """Timeline rows from the ``prepare`` mark on (the model load left out), or None."""
        rows = self.phase("prepare")
        if rows is None:
            return self.timeline if self.timeline is not None and len(self.timeline) else None
        return self.timeline[self.timeline["time_s"] >= rows["time_s"].iloc[0]]

    def busiest_util(self, rows):
        """Per sample, the highest utilization over the GPUs (a pandas Series), or None."""
        if rows is None or not self.util:
            return None
        series = rows[self.util].max(axis=1, skipna=True).dropna()
        return series if len(series) else None

    def gpu_present(self) -> bool:
        return bool(self.nvml_gpus) or self.busiest_util(self.timeline) is not None


def _model_on_cpu(facts: _Facts) -> Finding | None:
    if facts.device != "cpu" or not facts.gpu_present():
        return None
    names = ", ".join(sorted({g.get("name", "?") for g in facts.nvml_gpus})) or f"{len(facts.gpus)} GPU(s)"
    from whisperkit.measure.cuda import GPU_EXTRA_HINT

    environment = facts.run.environment or {}
    cuda_devices = environment.get("ctranslate2_cuda_devices")
    reason = facts.used.get("device_reason") or environment.get("cuda_unusable_reason")
    if getattr(facts.run.config, "device", None) == "cpu":
        why = "the run asked for device='cpu'"
        todo = "set device='cuda' (or 'auto') to run the model on the GPU"
    elif reason:
        why = f"device='auto' ran on the CPU: {reason}"
        todo = (f"install the CUDA libraries ctranslate2 loads, cuBLAS 12 and cuDNN 9 ({GPU_EXTRA_HINT}); "
                "`whisperkit env` shows what ctranslate2 sees and which libraries are missing")
    elif cuda_devices == 0:
        why = ("ctranslate2 saw no CUDA device although NVML lists the GPU (a ctranslate2 build "
               "without CUDA, or CUDA_VISIBLE_DEVICES hiding the GPU)")
        todo = "check `whisperkit env` (CUDA devices ctranslate2 sees) and CUDA_VISIBLE_DEVICES"
    else:
        why = "the model was placed on the CPU"
        todo = "load the model with device='cuda' and check `whisperkit env`"
    util = facts.busiest_util(facts.phase("decode"))
    reading = f"; the GPU read {util.mean():.0f} % meanwhile (not this model's work)" if util is not None else ""
    return Finding(
        "model-on-cpu", "The model ran on the CPU while a GPU was present",
        f"NVML lists {names}; the model ran on the CPU ({facts.used.get('compute_type')}): {why}{reading}.",
        f"{todo}. A GPU graph says nothing about a model that never ran on it.",
    )


def _other_process(facts: _Facts) -> Finding | None:
    rows = facts.transcription()
    if rows is None:
        return None
    for util, process in zip(facts.util, facts.process_util):
        device_util = rows[util].dropna()
        if not len(device_util) or device_util.mean() < OTHER_PROCESS_POINTS:
            continue
        own = rows[process].dropna() if process in rows else device_util.iloc[:0]
        if len(own):
            own_mean = float(own.mean())
        elif facts.device == "cpu":
            own_mean = 0.0  # a model on the CPU puts nothing on the GPU
        else:
            continue  # a GPU run without per-process readings: cannot tell whose work it was
        if device_util.mean() - own_mean < OTHER_PROCESS_POINTS:
            continue
        gpu = util.split("_", 1)[0]
        return Finding(
            "other-process-on-gpu", f"Another process used {gpu} during the run",
            f"{gpu} read {device_util.mean():.0f} % on average while this run's processes accounted for "
            f"{own_mean:.0f} % (NVML per-process utilization).",
            "Check `nvidia-smi` for other processes and rerun on an idle GPU; inside a container NVML "
            "reports host PIDs, so this process's share can read 0 when it cannot be matched.",
        )
    return None


def _gpu_idle_decode(facts: _Facts) -> Finding | None:
    if facts.device != "cuda":
        return None
    corpus = getattr(facts.run, "corpus", None)
    rows = facts.phase("decode") if corpus is None else facts.phase("first batch")  # corpus: the pipeline
    util = facts.busiest_util(rows)
    if util is None or rows is None:
        return None
    idle = float((util < IDLE_UTIL_PERCENT).mean())
    if idle < IDLE_SHARE:
        return None
    cores_busy = None
    if "process_cpu_percent" in rows and rows["process_cpu_percent"].notna().any():
        cores_busy = float(rows["process_cpu_percent"].mean()) * facts.cores / 100
    if cores_busy is not None and cores_busy >= 0.7:
        reading = (f"this process kept {cores_busy:.1f} cores busy meanwhile: the GPU waited on CPU work "
                   "(or the host thread spun while waiting, which CUDA's default scheduling does)")
    else:
        reading = "the CPU was mostly idle too: check what the meter counts and what else ran"
    return Finding(
        "gpu-idle-decode", "The GPU was idle for most of the decode phase",
        f"GPU utilization under {IDLE_UTIL_PERCENT:.0f} % in {100 * idle:.0f} % of the decode phase's "
        f"{len(util)} samples (mean {util.mean():.0f} %); {reading}.",
        "Decode in batches (mode='batched', a batch size up to the number of chunks), overlap the "
        "CPU stages of many files with decoding, and compare with `nvidia-smi dmon` on the same run.",
    )


def _sms_mostly_idle(facts: _Facts) -> Finding | None:
    """NVML's utilization high while GPM (Hopper and newer) shows most SMs idle."""
    from whisperkit.measure.columns import gpu_column

    if facts.device != "cuda":
        return None
    rows = facts.phase("decode") if getattr(facts.run, "corpus", None) is None else facts.phase("first batch")
    for index in facts.gpus:
        util, active = gpu_column(index, "util_percent"), gpu_column(index, "sm_active_percent")
        if rows is None or active not in rows:
            continue
        both = rows[[util, active]].dropna()
        if not len(both) or both[util].mean() < BUSY_UTIL_PERCENT or both[active].mean() > IDLE_SMS_PERCENT:
            continue
        util_mean, active_mean = float(both[util].mean()), float(both[active].mean())
        others = [(name, rows[gpu_column(index, suffix)].dropna())
                  for name, suffix in (("SM occupancy", "sm_occupancy_percent"),
                                       ("tensor-core activity", "tensor_active_percent"),
                                       ("DRAM bandwidth", "dram_bw_percent"))
                  if gpu_column(index, suffix) in rows]
        more = "".join(f", {name} {values.mean():.0f} %" for name, values in others if len(values))
        return Finding(
            "sms-mostly-idle", f"GPU {index} read {util_mean:.0f} % busy, but only {active_mean:.0f} % of its SMs "
            "were active: not really busy",
            f"over the decode phase's {len(both)} samples NVML's utilization (the share of time some kernel ran) "
            f"averaged {util_mean:.0f} % while GPM's SM activity averaged {active_mean:.0f} %{more}: kernels ran "
            "most of the time, on a minority of the SMs.",
            "Give each kernel more work: a larger batch (mode='batched', a batch size up to the number of chunks), "
            "batching across files (whisperkit.transcribe_clips); a small model may not fill a large GPU at any "
            "batch size, whose SMs can then be shared (MIG, or several jobs).",
        )
    return None


def _model_waited(facts: _Facts) -> Finding | None:
    corpus = getattr(facts.run, "corpus", None)
    if corpus is None or not corpus.wall_seconds or not corpus.model_wait_percent >= MODEL_WAIT_PERCENT:
        return None
    busy = ", ".join(f"{name} {100 * stats.busy_seconds / corpus.wall_seconds:.0f} % ({stats.threads} thread(s))"
                     for name, stats in corpus.stages.items() if name != "model")
    return Finding(
        "model-waited-in-corpus", f"The model waited for its next batch {corpus.model_wait_percent:.0f} % of the run",
        f"the model waited {corpus.model_wait_seconds:.2f} s of {corpus.wall_seconds:.2f} s for the CPU stages "
        f"(their busy time, share of the run: {busy}).",
        "Give the CPU stages more threads (transcribe_corpus(workers=...), --workers), keep packing on "
        "(fewer windows to prepare per second of audio), and read from a local disk.",
    )


def _long_prepare(facts: _Facts) -> Finding | None:
    transcript = facts.run.transcript
    if getattr(facts.run, "corpus", None) is not None:  # a corpus run's CPU stages overlap the model: _model_waited
        return None
    if not transcript.wall_seconds or transcript.prepare_seconds / transcript.wall_seconds < LONG_PREPARE_SHARE:
        return None
    share = transcript.prepare_seconds / transcript.wall_seconds
    util = facts.busiest_util(facts.phase("prepare"))
    gpu = f"; the GPU read {util.mean():.0f} % meanwhile" if util is not None else ""
    detects = _detects_language(facts)
    work = "audio decoding, voice detection (one CPU thread) and log-mel features" + (
        ", and language detection on the model" if detects else "")
    return Finding(
        "long-cpu-prepare", f"A long prepare phase: {100 * share:.0f} % of the run before the first window",
        f"prepare took {transcript.prepare_seconds:.2f} s of {transcript.wall_seconds:.2f} s ({work}){gpu}; "
        "decoding starts only after it.",
        "On one short file this is a fixed cost; over many files, prepare the next file while the "
        "model decodes this one (whisperkit.transcribe_clips batches across files)"
        + ("; give language= to skip detection" if detects else "") + ".",
    )


def _detects_language(facts: _Facts) -> bool:
    """The run's model detected the language before transcribe() returned."""
    if getattr(facts.run.config, "language", None) is not None:
        return False
    name = str(facts.used.get("model") or "").lower().rstrip("/")
    return not (name.endswith(".en") or "distil" in name)  # English-only models skip detection


def _language_detection(facts: _Facts) -> Finding | None:
    if facts.device != "cuda" or getattr(facts.run.config, "language", None) is not None:
        return None
    util = facts.busiest_util(facts.phase("prepare"))
    busy = util is not None and util.max() >= IDLE_UTIL_PERCENT
    if not (_detects_language(facts) or busy):
        return None
    reading = f"the GPU read up to {util.max():.0f} % during prepare" if util is not None else "no GPU reading"
    return Finding(
        "language-detection-in-prepare", "Language detection ran on the GPU inside the prepare phase",
        f"language=None with model {facts.used.get('model')}: faster-whisper detected "
        f"'{facts.run.transcript.language}' before transcribe() returned, running the encoder; {reading}. "
        "The prepare phase is not CPU only here.",
        "Give language='..' when it is known: it skips detection and shortens prepare.",
    )


def _batch_over_chunks(facts: _Facts) -> Finding | None:
    chunks, batch = facts.run.transcript.chunks, facts.used.get("batch_size")
    if facts.used.get("mode") != "batched" or chunks is None or not isinstance(batch, int) or batch <= chunks:
        return None
    return Finding(
        "batch-larger-than-chunks", f"Batch size {batch} is larger than the {chunks} chunk(s) of this audio",
        f"the audio was cut into {chunks} speech chunk(s) of at most 30 s; a batch holds chunks, so "
        f"batch size {batch} decoded {chunks} at once, as batch size {chunks} would.",
        "A larger batch changes nothing here; to fill batches, batch across files "
        "(whisperkit.transcribe_clips) or use longer audio.",
    )


def _workers_over_callers(facts: _Facts) -> Finding | None:
    workers = facts.used.get("num_workers") or 1
    if workers <= 1:
        return None
    growth = (facts.run.metrics or {}).get("rss_growth_mb")
    memory = f" (this run's RSS grew {growth:.0f} MiB, model load included)" if growth is not None else ""
    return Finding(
        "workers-over-callers", f"num_workers={workers} for one caller",
        f"one transcribe() call uses one CTranslate2 worker; the other {workers - 1} shared the weights "
        f"but each kept its own thread pool and working memory{memory}, and did nothing.",
        "Set num_workers to the number of threads that call transcribe() at the same time (1 for one "
        "file at a time).",
    )


def _threads_over_cores(facts: _Facts) -> Finding | None:
    workers = facts.used.get("num_workers") or 1
    threads = facts.used.get("cpu_threads") or DEFAULT_CPU_THREADS
    if facts.device != "cpu" or workers < 2 or workers * threads <= facts.cores:
        return None
    return Finding(
        "threads-over-cores", f"{workers} workers x {threads} threads = {workers * threads} threads for "
        f"{facts.cores} cores",
        f"each CTranslate2 worker has {threads} intra-op threads (cpu_threads={facts.used.get('cpu_threads')}); "
        f"when {workers} callers run at once, {workers * threads} threads compete for {facts.cores} logical cores.",
        "Keep num_workers x cpu_threads at or below the core count.",
    )


def _fast_sampling(facts: _Facts) -> Finding | None:
    if not facts.util or facts.timeline is None or len(facts.timeline) < 3:
        return None
    interval = float(facts.timeline["time_s"].diff().median())
    if not interval < NVML_SHORTEST_PERIOD_S:
        return None
    util = facts.timeline[facts.util[0]].dropna()
    repeats = float((util.diff() == 0).iloc[1:].mean()) if len(util) > 1 else float("nan")
    repeated = f"; {100 * repeats:.0f} % of consecutive readings of GPU {facts.gpus[0]} repeat the previous one" \
        if repeats == repeats else ""
    return Finding(
        "sampling-faster-than-nvml", f"Sampled every {interval:.2f} s, faster than NVML updates utilization",
        f"NVML's utilization is the share of the driver's last period (1/6 s to 1 s, by GPU) with a kernel "
        f"running, so readings closer than that repeat or overlap{repeated}.",
        "Read GPU utilization over intervals of 0.5-1 s (interval=0.5), or as a moving average.",
    )
