"""What the Ray engine runs on the cluster: the CPU stage task and the model actor.

Both are the local engine's stage functions (:mod:`whisperkit.core.corpus.stages`,
:class:`whisperkit.core.corpus.decoding.WindowDecoder`) wrapped for Ray Data's ``map_batches``.
Rows travel as ``{"kind": str, "item": bytes}``: the stage objects pickled, so the objects the
stages pass between them are the same in both engines. Kinds:

- ``group``: a list of :class:`~whisperkit.core.corpus.stages.Source` (driver -> CPU stage);
- ``window``: a :class:`~whisperkit.core.corpus.stages.Window` with its features (CPU stage -> model);
- ``failure``: a file that could not be read (passes through the model stage to the driver);
- ``stage``: a CPU task's account, busy and waiting seconds (passes through to the driver);
- ``text``: a :class:`~whisperkit.core.corpus.decoding.PieceText` (model -> driver);
- ``report``: one per model call, the actor's :class:`WorkerReport` (model -> driver);
- ``fatal``: a :class:`~whisperkit.errors.WhisperkitError` that ends the run (model -> driver).

These run in Ray's worker processes; the driver (:mod:`whisperkit.core.corpus.engines.ray_engine`)
hands them to Ray Data. Ray is imported only inside the functions that run there.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from whisperkit.core.corpus.engines.base import DecodeState, decode_fitting
from whisperkit.core.corpus.stages import Batcher, Failure, Packer, Window, add_features, read_pieces
from whisperkit.errors import WhisperkitError
from whisperkit.measure.sampler import DEFAULT_INTERVAL_S

ROWS_PER_BLOCK = 8  # the CPU stage hands windows on this many at a time (a block of about 8 MB)


def encode(kind: str, item: object) -> dict:
    """One row: ``kind`` and the pickled stage object."""
    return {"kind": kind, "item": pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)}


def decode_rows(batch: dict) -> list[tuple[str, Any]]:
    """``(kind, object)`` for each row of a Ray Data batch (a dict of columns)."""
    return [(str(kind), pickle.loads(item)) for kind, item in zip(batch["kind"], batch["item"])]


def to_columns(rows: list[dict]) -> dict:
    import numpy as np

    return {"kind": np.array([row["kind"] for row in rows], dtype=object),
            "item": np.array([row["item"] for row in rows], dtype=object)}


def prepare(batch: dict, *, pack: bool, feature_kwargs: dict, batch_size: int = 1) -> Iterator[dict]:
    """CPU stage task: a group of sources (one row) -> windows with features, and the files that failed.

    Reads each source (decode + voice detection), packs its pieces with the sources before it in
    its group, and computes each window's log-mel features: ``read_pieces`` -> ``Packer`` ->
    ``add_features``, as the local engine does. Packed and single-piece windows leave in runs of
    ``batch_size`` of one kind, formed by the local engine's :class:`Batcher` (so that a model
    batch mostly holds one kind, and only packed windows pay for word timestamps). Yields blocks of about
    :data:`ROWS_PER_BLOCK` rows, so at most one open window, a run of each kind and one block are
    held here whatever the length of the files. The last row accounts for the task, as the
    local engine's ``read`` and ``pack`` stages.
    """
    from faster_whisper.feature_extractor import FeatureExtractor

    clock = TaskClock()
    extractor = FeatureExtractor(**feature_kwargs)
    packer = Packer(pack)
    batcher = Batcher(batch_size)
    rows: list[dict] = []

    def hold(batches: list[list[Window]]) -> None:
        rows.extend(encode("window", window) for batch in batches for window in batch)

    sources = [source for _, group in decode_rows(batch) for source in group]
    for source in sources:
        pieces = read_pieces(source)
        while (item := clock.timed("read", next, pieces, None)) is not None:
            if isinstance(item, Failure):
                rows.append(encode("failure", item))
                continue
            hold(batcher.add(clock.timed("pack", _packed, packer.add(item), extractor)))
            if len(rows) >= ROWS_PER_BLOCK:
                yield to_columns(rows)
                rows = []
    hold(batcher.add(clock.timed("pack", _packed, packer.flush(), extractor)))
    hold(batcher.flush())
    rows.append(encode("stage", clock.account(len(sources))))
    yield to_columns(rows)


def _packed(windows: list[Window], extractor: Any) -> list[Window]:
    return [add_features(window, extractor) for window in windows]


class TaskClock:
    """What a CPU task spent on each stage: ``(stage, start, end)`` spans in wall-clock seconds,
    adjacent spans of the same stage joined."""

    def __init__(self) -> None:
        self.spans: list[list] = []

    def timed(self, stage: str, function: Callable[..., Any], *args: object) -> Any:
        """``function(*args)``, its time counted to ``stage``."""
        started = time.time()
        try:
            return function(*args)
        finally:
            ended = time.time()
            last = self.spans[-1] if self.spans else None
            if last and last[0] == stage and started - last[2] < 0.001:
                last[2] = ended
            else:
                self.spans.append([stage, started, ended])

    def account(self, files: int) -> dict:
        """``files`` handled, busy seconds per stage, and the spans, for the driver."""
        busy: dict[str, float] = {}
        for stage, start, end in self.spans:
            busy[stage] = busy.get(stage, 0.0) + end - start
        return {"files": files, "busy_seconds": busy, "spans": [tuple(span) for span in self.spans],
                "pid": os.getpid()}


@dataclass
class WorkerSettings:
    """How each model actor loads its model and decodes (plain values, sent to every actor).

    ``model`` is a name or a folder that exists on every node; ``device`` "cuda" gives each actor
    the one GPU Ray assigned it (Ray sets ``CUDA_VISIBLE_DEVICES``, so it is device 0 there).
    ``crash_after_batches`` is a test hook: the first actor to finish that many model calls exits
    before returning the last one (``os._exit``), as a crashed worker would; ``crash_marker`` is
    the file that makes it happen once in the whole run.
    """

    model: str | None
    device: str
    compute_type: str
    cpu_threads: int
    language: str | None
    beam_size: int
    batch_size: int = 8
    options: dict = field(default_factory=dict)
    sample_interval: float = DEFAULT_INTERVAL_S
    num_workers: int = 1


@dataclass
class WorkerReport:
    """What one model call tells the driver about its actor.

    ``worker`` identifies the actor's life (``actor_id`` and ``pid``; a restarted actor keeps its
    id and gets a new pid). ``samples`` are the utilization samples taken since the previous
    report (the sampler's dicts, ``time_s`` from ``clock_start`` wall-clock seconds);
    ``started``/``ended`` the call's wall-clock seconds; ``waited_seconds`` how long the actor sat
    idle before this call (since loading, or since its previous call).
    """

    worker: dict
    clock_start: float
    samples: list[dict]
    started: float
    ended: float
    waited_seconds: float
    windows: int
    audio_seconds: float
    load_seconds: float = 0.0
    unpacked: int = 0  # windows the decoder decoded again one piece each (see WindowDecoder)
    batch_retries: list[dict] = field(default_factory=list)
    retry_seconds: float = 0.0  # spent in this call's batches that ran out of memory
    batch_size: int = 0  # the batch size that fits this actor after this call (halved on out-of-memory)


def identity(load_seconds: float, nvml_gpus: list[int]) -> dict:
    """Where this actor runs: node, GPUs, actor id, pid, host (needs a Ray worker process)."""
    import socket

    import ray

    context = ray.get_runtime_context()
    return {
        "node_id": context.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "host": socket.gethostname(),
        "actor_id": context.get_actor_id(),
        "pid": os.getpid(),
        "restarted": bool(context.was_current_actor_reconstructed),
        "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
        "nvml_gpus": nvml_gpus,
        "load_seconds": load_seconds,
    }


def nvml_indices(gpu_ids: list[str]) -> list[int]:
    """NVML indices of the GPUs Ray gave this actor (for its timeline's ``gpu{i}_*`` columns).

    Ray's ids are what it puts in ``CUDA_VISIBLE_DEVICES``: UUIDs where the node's devices were
    named by UUID (matched here against NVML's), else indices, taken as NVML's. Those agree on
    nodes of identical GPUs; on a node of mixed GPUs, start Ray with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
    (NVML's order) or with UUIDs in ``CUDA_VISIBLE_DEVICES``.
    """
    from whisperkit.measure.nvml import gpu_inventory

    inventory, _ = gpu_inventory()
    found = []
    for gpu in gpu_ids:
        match = [item["index"] for item in inventory if item.get("uuid") and gpu.startswith(item["uuid"])]
        if match:
            found.append(match[0])
        elif gpu.isdigit():
            found.append(int(gpu))
    return found


class ModelWorker:
    """Ray Data callable class: one loaded model in its own process, decoding batches of windows.

    Each actor samples its own process and its node's GPUs with the whisperkit
    :class:`~whisperkit.measure.sampler.Sampler` and sends the samples taken since its last call
    with every batch, so the driver builds one timeline per actor, and nothing is lost when an
    actor dies but the part after its last finished call.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        import ray

        from whisperkit.core.corpus.decoding import WindowDecoder
        from whisperkit.core.models import load_model
        from whisperkit.measure.sampler import Sampler

        self.settings = settings
        self.sampler = Sampler(interval=settings.sample_interval).start()
        self.clock_start = time.time()
        self.sampler.mark("load")
        started = time.perf_counter()
        self.failed: WhisperkitError | None = None
        try:
            model = load_model(settings.model, settings.device, settings.compute_type, settings.num_workers,
                               settings.cpu_threads)
            self.decoder = WindowDecoder(model, language=settings.language, beam_size=settings.beam_size,
                                         options=settings.options)
        except WhisperkitError as error:  # sent to the driver by the first call (see __call__)
            self.failed = error
        load_seconds = time.perf_counter() - started
        self.sampler.mark("decode")
        gpu_ids = [str(gpu) for gpu in ray.get_gpu_ids()]
        self.worker = identity(load_seconds, nvml_indices(gpu_ids) if gpu_ids else [])
        self.worker["loaded_at"] = time.time()
        self.sent = 0
        self.calls = 0
        self.idle_since = time.time()
        self.load_seconds = load_seconds
        self.state = DecodeState(settings.batch_size)  # out-of-memory halving, kept across this actor's calls

    def __call__(self, batch: dict) -> dict:
        """Decode the batch's windows; pass its other rows on; add this call's report.

        A :class:`~whisperkit.errors.WhisperkitError` (the model cannot load here, out of memory
        even at batch size 1) ends the run, as in the local engine: it goes to the driver as a
        ``fatal`` row, which raises it there (Ray's own error wrapping would lose its type).
        """
        if self.failed is not None:
            return to_columns([encode("fatal", self.failed)])
        started = time.time()
        rows = decode_rows(batch)
        windows = [item for kind, item in rows if kind == "window"]
        out = [encode(kind, item) for kind, item in rows if kind != "window"]  # failures, task accounts
        retries_before = len(self.state.batch_retries)
        retry_seconds_before = self.state.retry_seconds
        unpacked_before = self.decoder.unpacked
        try:
            out.extend(encode("text", text) for text in decode_fitting(self.state, self.decoder, windows))
        except WhisperkitError as error:
            return to_columns([encode("fatal", error)])
        self.calls += 1
        report = self._report(started, windows)
        report.batch_retries = self.state.batch_retries[retries_before:]
        report.retry_seconds = self.state.retry_seconds - retry_seconds_before
        report.unpacked = self.decoder.unpacked - unpacked_before
        report.batch_size = self.state.batch_size
        out.append(encode("report", report))
        return to_columns(out)

    def _report(self, started: float, windows: list[Window]) -> WorkerReport:
        samples = self.sampler.samples(self.sent)
        self.sent += len(samples)
        ended = time.time()
        report = WorkerReport(
            worker=self.worker, clock_start=self.clock_start, samples=samples, started=started, ended=ended,
            waited_seconds=max(0.0, started - self.idle_since), windows=len(windows),
            audio_seconds=sum(window.seconds for window in windows),
            load_seconds=self.load_seconds if self.calls == 1 else 0.0,
        )
        self.idle_since = ended
        return report
