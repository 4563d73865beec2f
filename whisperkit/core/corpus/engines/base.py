"""The interface every corpus engine implements, and what an engine reports of a run.

An engine runs the stages of the corpus pipeline (see :mod:`whisperkit.core.corpus.engines`)
over a list of :class:`~whisperkit.core.corpus.stages.Source` and calls ``on_file`` once per
file as it completes; the driver (:mod:`whisperkit.core.corpus.transcribe`) does the rest:
choosing the files (resume), writing outputs and the manifest, building the result. An engine
returns an :class:`EngineRun`: each stage's statistics, the stages' work intervals
(:class:`Span`), and where there are model workers (engine "ray"), a
:class:`WorkerTimeline` per worker.

Words: a *piece* is at most 30 s of one file's speech, a *window* the model's 30 s input (one
piece or several packed), a *span* one interval of a stage's work. *Reader threads* read and
voice-detect files (the thread engine), *model workers* are the processes that hold a model
(the Ray engine's actors), and ``num_workers`` is CTranslate2's own (workers inside one model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from whisperkit.core.corpus.decoding import PieceText, WindowDecoder
    from whisperkit.core.corpus.stages import Failure, Source, Window
    from whisperkit.core.transcription import Transcript

#: ``on_file(source, transcript or failure, piece texts)``: called once per file as it completes
OnFile = Callable[["Source", "Transcript | Failure", list], None]
STAGES = ("read", "pack", "model", "write")  # the pipeline's stages, in order


@dataclass
class StageStats:
    """One stage over a run: ``busy_seconds`` working (summed over its threads or tasks),
    ``wait_seconds`` waiting for input (the model) or for room downstream (the CPU stages),
    ``items`` handled, ``threads`` the threads, task processes or model workers that ran it."""

    threads: int
    busy_seconds: float = 0.0
    wait_seconds: float = 0.0
    items: int = 0


@dataclass
class Span:
    """One interval of one stage's work on one lane (a thread, a task process or a model
    worker), in seconds since the run started."""

    stage: str
    thread: int
    start_s: float
    end_s: float


@dataclass
class WorkerTimeline:
    """One model worker's life (engine "ray": an actor): where it ran, its utilization samples, its batches.

    ``timeline`` has the :class:`~whisperkit.measure.sampler.Sampler` columns (its process and
    its node's GPUs), ``time_s`` on the run's clock (the ``spans`` clock; nodes' clocks are
    assumed in step). ``gpus`` are NVML indices of the GPUs it was given (empty on CPU);
    ``restarted`` is True for a worker started again after it died (a new process).
    ``busy_seconds`` decoding, ``wait_seconds`` idle between batches (after loading),
    ``load_seconds`` loading the model, which ended at ``loaded_at_s`` (run clock).
    """

    label: str
    actor_id: str
    node_ip: str
    host: str
    pid: int
    gpus: list[int]
    restarted: bool
    timeline: object  # pandas.DataFrame
    spans: list[Span] = field(default_factory=list)
    batches: int = 0
    windows: int = 0
    audio_seconds: float = 0.0
    busy_seconds: float = 0.0
    wait_seconds: float = 0.0
    load_seconds: float = 0.0
    loaded_at_s: float = 0.0


@dataclass
class EngineRun:
    """What an engine measured over one run, the same shape for every engine.

    ``stats`` per stage (in :data:`STAGES` order), ``spans`` on the run's clock (seconds since
    the engine started), ``windows`` the model decoded and ``pieces`` it heard,
    ``unpacked_windows`` decoded again one piece each, ``batch_size`` the largest that fitted
    (halved on out-of-memory, ``batch_retries`` and ``retry_seconds``), ``worker_timelines``
    one per model worker where the engine has them, ``info`` what the engine adds to the
    result's ``engine_info``.
    """

    stats: dict[str, StageStats] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    windows: int = 0
    pieces: int = 0
    unpacked_windows: int = 0
    batch_size: int = 0
    batch_retries: list[dict] = field(default_factory=list)
    retry_seconds: float = 0.0
    worker_timelines: list[WorkerTimeline] = field(default_factory=list)
    info: dict = field(default_factory=dict)


class Engine(Protocol):
    """A corpus engine, chosen once by the driver (see :func:`whisperkit.core.corpus.transcribe`).

    Before running it says what the run will use: ``name`` ("local", "ray"), ``model_settings``
    (the model's :meth:`~whisperkit.core.models.Model.describe`), whether it ``pack``\\ s,
    ``batch_size``, ``load_seconds`` (0 where each worker loads its own model) and ``info``
    (for the result's ``engine_info``). :meth:`run` runs the stages.
    """

    name: str
    model_settings: dict
    pack: bool
    batch_size: int
    load_seconds: float
    info: dict

    def run(self, sources: list[Source], on_file: OnFile, on_batch: Callable[[], None] | None = None) -> EngineRun:
        """Run the stages over ``sources``, calling ``on_file`` once per file as it completes and
        ``on_batch`` before the model's first batch; raise what ends the run (a model error,
        KeyboardInterrupt) after handing on the files already complete."""
        ...


@dataclass
class DecodeState:
    """What out-of-memory halving keeps across a run's batches, in one model worker: the
    ``batch_size`` that fits (halved for good on out-of-memory), each halving
    (``batch_retries``) and the seconds spent in batches that failed (``retry_seconds``)."""

    batch_size: int
    batch_retries: list[dict] = field(default_factory=list)
    retry_seconds: float = 0.0


def decode_fitting(state: DecodeState, decoder: WindowDecoder, windows: list[Window]) -> list[PieceText]:
    """Decode ``windows`` in batches of at most ``state.batch_size``; on out-of-memory in halves
    (here and for the batches to come), through
    :func:`whisperkit.core.batching.halving_on_out_of_memory` as every batched path. Both engines
    decode through this."""
    texts: list[PieceText] = []
    start = 0
    while start < len(windows):
        size = state.batch_size
        texts.extend(_decode_halving(state, decoder, windows[start:start + size]))
        start += size
    return texts


def _decode_halving(state: DecodeState, decoder: WindowDecoder, windows: list[Window]) -> list[PieceText]:
    from whisperkit.core.batching import halving_on_out_of_memory

    started = [0.0]

    def attempt(size: int | None) -> list[PieceText]:
        started[0] = time.monotonic()
        step = max(1, size or 1)
        texts = [text for start in range(0, len(windows), step) for text in decoder(windows[start:start + step])]
        for text in texts:  # what each file records as its batch size
            text.batch_size = step
        return texts

    def smaller(size: int) -> None:
        state.retry_seconds += time.monotonic() - started[0]
        state.batch_size = min(state.batch_size, size)

    return halving_on_out_of_memory(attempt, min(state.batch_size, len(windows)), device=decoder.device,
                                    retries=state.batch_retries, on_retry=smaller)


def ordered(stats: dict[str, StageStats]) -> dict[str, StageStats]:
    """``stats`` in :data:`STAGES` order (others after)."""
    return {name: stats[name] for name in sorted(stats, key=lambda n: STAGES.index(n) if n in STAGES else len(STAGES))}


__all__ = ["STAGES", "DecodeState", "Engine", "EngineRun", "OnFile", "Span", "StageStats", "WorkerTimeline",
           "decode_fitting", "ordered"]

