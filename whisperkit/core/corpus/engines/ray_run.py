"""The driver's side of a Ray run: each file's pieces gathered once, each model actor's timeline.

:class:`RayRun` takes the rows the model stage returns (see :mod:`~whisperkit.core.corpus.engines.ray_workers`)
in any order, any number of times: a piece reported twice (a batch retried after its actor died)
counts once, and a file is handed to ``on_file`` once, when its pieces 0 .. last have arrived.
"""

from __future__ import annotations

import time
from typing import Any

from whisperkit.core.corpus.decoding import PieceText, assemble, is_complete
from whisperkit.core.corpus.engines.base import EngineRun, OnFile, Span, StageStats, WorkerTimeline, ordered
from whisperkit.core.corpus.engines.ray_workers import WorkerReport
from whisperkit.core.corpus.stages import Failure, Source


class RayRun:
    """The driver's state of one Ray run; :meth:`result` is the engine's :class:`EngineRun`."""

    def __init__(self, sources: list[Source], on_file: OnFile, clock_start: float, batch_size: int) -> None:
        self.by_index = {source.index: source for source in sources}
        self.on_file = on_file
        self.clock_start = clock_start
        self.pending: dict[int, dict[int, PieceText]] = {}
        self.finished: set[int] = set()
        self.duplicates = 0
        self.reports: dict[tuple[str, int], list[WorkerReport]] = {}
        self.stats: dict[str, StageStats] = {}
        self.spans: list[Span] = []
        self.windows = 0
        self.pieces_read = 0
        self.batch_retries: list[dict] = []
        self.retry_seconds = 0.0  # summed over the actors' reports
        self.unpacked_windows = 0
        self.batch_size = batch_size
        self.workers: list[WorkerTimeline] = []
        self.task_lanes: dict[int, int] = {}  # Ray worker process of a CPU task -> its lane

    def take(self, kind: str, item: Any) -> None:
        """One row from the model stage: a piece's text, a failed file, or an actor's report."""
        if kind == "fatal":  # the model cannot run: the run ends, as in the local engine
            raise item
        if kind == "report":
            self.reports.setdefault((item.worker["actor_id"], item.worker["pid"]), []).append(item)
            self.batch_retries.extend(item.batch_retries)
            self.retry_seconds += item.retry_seconds
            self.unpacked_windows += item.unpacked
        elif kind == "stage":
            self._task(item)
        elif kind == "failure":
            self._finish(item.source, item, [])
        elif kind == "text":
            self._text(item)

    def _text(self, text: PieceText) -> None:
        texts = self.pending.setdefault(text.source, {})
        if text.source in self.finished or text.number in texts:
            self.duplicates += 1  # a retried batch reported it again
            return
        texts[text.number] = text
        self.pieces_read += 1
        if is_complete(list(texts.values())):
            source = self.by_index[text.source]
            transcript = assemble(source.path, list(texts.values()), {}, time.time() - self.clock_start)
            self._finish(text.source, transcript, list(texts.values()))

    def _finish(self, index: int, outcome, texts: list) -> None:
        if index in self.finished:
            self.duplicates += 1
            return
        self.finished.add(index)
        self.pending.pop(index, None)
        since = time.time()
        self.on_file(self.by_index[index], outcome, texts)
        self._busy("write", 0, since, time.time())

    def finish_missing(self) -> None:
        """Files the cluster never finished (cannot happen unless Ray lost them): failed, not silent."""
        for index in sorted(set(self.by_index) - self.finished):
            self._finish(index, Failure(index, f"{self.by_index[index].path}: lost by the Ray engine; run again to redo it"), [])

    def _task(self, item: dict) -> None:
        """A CPU task's account: its ``read`` and ``pack`` (packing and features) seconds, as the
        local engine counts them; a task's lane (thread) is its Ray worker process."""
        thread = self.task_lanes.setdefault(item["pid"], len(self.task_lanes))
        for stage, busy in item["busy_seconds"].items():
            stats = self.stats.setdefault(stage, StageStats(0))
            stats.busy_seconds += busy
            stats.threads = len(self.task_lanes)
        self.stats.setdefault("read", StageStats(0)).items += item["files"]
        self.spans.extend(Span(stage, thread, start - self.clock_start, end - self.clock_start)
                          for stage, start, end in item["spans"])

    def _busy(self, stage: str, thread: int, start: float, end: float, items: int = 1) -> None:
        stats = self.stats.setdefault(stage, StageStats(1))
        stats.busy_seconds += end - start
        stats.items += items
        self.spans.append(Span(stage, thread, start - self.clock_start, end - self.clock_start))

    def result(self) -> EngineRun:
        """What the run measured: a :class:`WorkerTimeline` per model worker's life, the model
        stage summed over them, the CPU tasks' stages and spans."""
        model = StageStats(0)
        for number, reports in enumerate(sorted(self.reports.values(), key=lambda lives: lives[0].started)):
            worker = _worker_timeline(number, reports, self.clock_start)
            self.workers.append(worker)
            self.spans.extend(worker.spans)
            model.threads += 1
            model.busy_seconds += worker.busy_seconds
            model.wait_seconds += worker.wait_seconds
            model.items += worker.windows
        self.stats["model"] = model
        self.windows = model.items
        self.stats.setdefault("pack", StageStats(0)).items = model.items
        sizes = [report.batch_size for reports in self.reports.values() for report in reports]
        info = {"duplicates_dropped": self.duplicates, "actor_restarts": sum(1 for w in self.workers if w.restarted),
                "worker_lives": len(self.workers)}
        return EngineRun(stats=ordered(self.stats), spans=self.spans, windows=self.windows, pieces=self.pieces_read,
                         unpacked_windows=self.unpacked_windows, batch_size=min(sizes, default=self.batch_size),
                         batch_retries=self.batch_retries, retry_seconds=self.retry_seconds,
                         worker_timelines=self.workers, info=info)


def _worker_timeline(number: int, reports: list[WorkerReport], clock_start: float) -> WorkerTimeline:
    import pandas as pd

    first = reports[0]
    who = first.worker
    shift = first.clock_start - clock_start
    samples = [sample for report in reports for sample in report.samples]
    timeline = pd.DataFrame(samples)
    if len(timeline):
        timeline["time_s"] = timeline["time_s"] + shift
    gpus = list(who.get("nvml_gpus") or [])
    where = f"GPU {','.join(map(str, gpus))}" if gpus else "CPU"
    restarted = bool(who.get("restarted"))
    label = f"worker {number} ({who['node_ip']}, {where}, actor {who['actor_id'][:6]}" + (", restarted)" if restarted else ")")
    spans = [Span("model", number, r.started - clock_start, r.ended - clock_start) for r in reports]
    return WorkerTimeline(
        label=label, actor_id=who["actor_id"], node_ip=who["node_ip"], host=who["host"], pid=who["pid"], gpus=gpus,
        restarted=restarted, timeline=timeline, spans=spans, batches=len(reports),
        windows=sum(r.windows for r in reports), audio_seconds=sum(r.audio_seconds for r in reports),
        busy_seconds=sum(r.ended - r.started for r in reports),
        wait_seconds=sum(r.waited_seconds for r in reports), load_seconds=who.get("load_seconds", 0.0),
        loaded_at_s=who.get("loaded_at", first.started) - clock_start,
    )
