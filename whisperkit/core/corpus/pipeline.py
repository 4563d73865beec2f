"""The corpus pipeline: stages joined by bounded queues, the CPU stages running ahead of the model.

Stage interface (plain functions on plain data, in :mod:`~whisperkit.core.corpus.stages`,
:mod:`~whisperkit.core.corpus.decoding` and :mod:`~whisperkit.core.corpus.outputs`; this module
only runs them on threads; ``whisperkit.engines`` may run the same functions on Ray Data)::

    Source(index, path, name)                               sources.find_sources(paths)
      -- read_pieces(source) -------------------------> Piece | Failure     (CPU, a pool of workers)
         decode in blocks of 60 s; a file of <= 30 s is one whole piece, a longer one is cut by
         Silero VAD into chunks of <= 30 s of speech; Piece.spans maps piece time to file time;
         the file's last piece says last=True and carries audio_seconds and warnings
      -- Packer(pack).add(piece) / .flush() ----------> Window(places=[Place(piece, start, end)])
         pieces packed in arrival order into windows of <= 28 s, 0.6 s of silence between two
         (pack=False: one piece per window); places is the clip map
      -- add_features(window, model.feature_extractor) -> Window.features (n_mels x 3000)
      -- WindowDecoder(model, language=...)(windows) ---> [PieceText]       (the model; one batch)
         BatchedInferencePipeline.forward on the stacked features; a batch with a packed window
         decodes with word timestamps and each word goes to the piece holding its midpoint (so
         batches of packed and of single-piece windows are best formed apart, as here)
      -- group PieceTexts by source until is_complete -> assemble(path, texts, config) -> Transcript
      -- outputs.write_outputs(dir, source, transcript, formats); Manifest.record(...)

Threads here: ``workers`` readers -> piece queue -> one packer (packing and features, forming
batches of ``batch_size`` windows across files) -> batch queue -> the model, in the calling
thread -> text queue (words only) -> one writer. The queues that carry audio are bounded, so a
slow model holds the CPU stages back instead of letting decoded audio pile up.

Memory bound (float32 audio takes 64 KB per second): each reader holds at most two blocks of
60 s (a block and the carried-over tail of the one before, 7.7 MB) and the pieces cut from
them; the piece queue at most ``2 x batch_size`` pieces of <= 30 s (1.9 MB each); the packer
one open window of <= 30 s and two batches it is forming (packed windows and single-piece
windows batch apart); the batch queue ``QUEUED_BATCHES`` batches; the model one. Windows with
features in flight are therefore at most ``(QUEUED_BATCHES + 3) x batch_size + 1``, about 1 MB
each (80 mel bands; 1.5 MB with 128): for batch size 8 and 2 readers, under 100 MB in all,
whatever the length of a file or the size of the folder. Readers hand freed memory back to
the system after a block, at most every 5 s (glibc otherwise keeps it, and the resident size
creeps up with the audio's length). On top comes the model's own working memory for one batch
(on a CPU it does not grow with the length of a file: ``pytest tests/test_corpus.py -k
memory_stays_bounded`` measures it against batched ``transcribe``, and the README's "Measured
here" table quotes a run), and the transcripts (text) of the files done, kept for the result.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from whisperkit.core.corpus.decoding import PieceText, WindowDecoder, assemble, is_complete
from whisperkit.core.corpus.stages import (
    Batcher,
    Failure,
    Packer,
    Source,
    Window,
    add_features,
    read_pieces,
)
from whisperkit.core.transcription import Transcript

QUEUED_BATCHES = 2  # batches ready and waiting for the model
POLL_SECONDS = 0.2  # how often a blocked thread looks whether the run was stopped
MAX_SPANS = 200_000  # stage spans kept for the timeline
_END = object()  # marks the end of a queue


@dataclass
class StageStats:
    """One stage over a run: ``busy_seconds`` working (summed over its threads), ``wait_seconds``
    waiting for input (the model) or for room downstream (the CPU stages), ``items`` handled."""

    threads: int
    busy_seconds: float = 0.0
    wait_seconds: float = 0.0
    items: int = 0


@dataclass
class Span:
    """One piece of work of one stage thread, in seconds since the run started."""

    stage: str
    thread: int
    start_s: float
    end_s: float


class _Run:
    """The shared state of one pipeline run: queues, stop flag, clocks and spans."""

    def __init__(self, batch_size: int, workers: int):
        self.batch_size = batch_size
        self.pieces: queue.Queue = queue.Queue(maxsize=2 * batch_size)
        self.batches: queue.Queue = queue.Queue(maxsize=QUEUED_BATCHES)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.started = time.monotonic()
        self.stats = {"read": StageStats(workers), "pack": StageStats(1), "model": StageStats(1),
                      "write": StageStats(1)}
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        self.batch_retries: list[dict] = []
        self.retry_seconds = 0.0  # spent in batches that ran out of memory
        self.windows = 0
        self.pieces_read = 0

    def busy(self, stage: str, thread: int, since: float, items: int = 1) -> None:
        now = time.monotonic()
        with self.lock:
            stats = self.stats[stage]
            stats.busy_seconds += now - since
            stats.items += items
            if len(self.spans) < MAX_SPANS:
                self.spans.append(Span(stage, thread, since - self.started, now - self.started))

    def waited(self, stage: str, since: float) -> None:
        with self.lock:
            self.stats[stage].wait_seconds += time.monotonic() - since

    def put(self, target: queue.Queue, item, stage: str) -> bool:
        """Put ``item``, waiting for room; False when the run was stopped meanwhile."""
        since = time.monotonic()
        while not self.stop.is_set():
            try:
                target.put(item, timeout=POLL_SECONDS)
                self.waited(stage, since)
                return True
            except queue.Full:
                continue
        return False

    def get(self, source: queue.Queue, stage: str):
        """Take an item, waiting for one; None when the run was stopped meanwhile."""
        since = time.monotonic()
        while not self.stop.is_set():
            try:
                item = source.get(timeout=POLL_SECONDS)
                self.waited(stage, since)
                return item
            except queue.Empty:
                continue
        return None

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)
        self.stop.set()


def run_pipeline(sources: list[Source], decoder: WindowDecoder, feature_extractor: Callable, *, batch_size: int,
                 pack: bool, workers: int, on_file: Callable[[Source, Transcript | Failure, list[PieceText]], None],
                 on_batch: Callable[[], None] | None = None) -> _Run:
    """Run the stages over ``sources`` on threads; ``on_file(source, transcript_or_failure, texts)``
    is called on the writer thread as each file completes. Returns the run's state (stats, spans).
    Raises what a stage raised (KeyboardInterrupt stops the readers and lets the writer finish
    the files already complete)."""
    run = _Run(batch_size, workers)
    todo: queue.Queue = queue.Queue()
    for source in sources:
        todo.put(source)
    finished: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_guard(run, _reader), args=(run, todo, number), daemon=True,
                                name=f"whisperkit-read-{number}") for number in range(workers)]
    threads.append(threading.Thread(target=_guard(run, _packer), args=(run, pack, workers, feature_extractor),
                                    daemon=True, name="whisperkit-pack"))
    writer = threading.Thread(target=_guard(run, _writer), args=(run, finished, sources, on_file), daemon=True,
                              name="whisperkit-write")
    for thread in [*threads, writer]:
        thread.start()
    try:
        _model_loop(run, decoder, finished, on_batch)
    except BaseException:  # Ctrl-C or a model error: stop reading, write the files already complete
        run.stop.set()
        finished.put(_END)
        writer.join()
        raise
    finished.put(_END)
    writer.join()
    if run.errors:
        raise run.errors[0]
    return run


def _guard(run: _Run, target):
    def guarded(*args):
        try:
            target(*args)
        except BaseException as error:  # reported by the calling thread
            run.fail(error)

    return guarded


def _reader(run: _Run, todo: queue.Queue, number: int) -> None:
    while not run.stop.is_set():
        try:
            source = todo.get_nowait()
        except queue.Empty:
            break
        items = read_pieces(source)
        while True:
            since = time.monotonic()
            item = next(items, None)
            if item is None:
                break
            run.busy("read", number, since)
            if not run.put(run.pieces, item, "read"):
                return
    run.put(run.pieces, _END, "read")


def _packer(run: _Run, pack: bool, workers: int, feature_extractor) -> None:
    """Packing and features; batches of packed windows and of single-piece windows form apart,
    so that only the packed ones pay for word timestamps."""
    packer = Packer(pack)
    batcher = Batcher(run.batch_size)
    ended = 0
    while ended < workers:
        item = run.get(run.pieces, "pack")
        if item is None:
            return
        if item is _END:
            ended += 1
            continue
        since = time.monotonic()
        if isinstance(item, Failure):
            if not run.put(run.batches, item, "pack"):
                return
            continue
        run.pieces_read += int(item.seconds > 0)
        if not _add_windows(run, packer.add(item), batcher, feature_extractor, since):
            return
    if not _add_windows(run, packer.flush(), batcher, feature_extractor, time.monotonic()):
        return
    for batch in batcher.flush():
        if not run.put(run.batches, batch, "pack"):
            return
    run.put(run.batches, _END, "pack")


def _add_windows(run: _Run, windows: list[Window], batcher: Batcher, feature_extractor, since: float) -> bool:
    for window in windows:
        add_features(window, feature_extractor)
        run.windows += int(window.seconds > 0)
    run.busy("pack", 0, since, items=len(windows))
    return all(run.put(run.batches, batch, "pack") for batch in batcher.add(windows))


def _model_loop(run: _Run, decoder: WindowDecoder, finished: queue.Queue, on_batch) -> None:
    while True:
        item = run.get(run.batches, "model")
        if item is None:
            return
        if item is _END:
            return
        if isinstance(item, Failure):
            finished.put(item)
            continue
        since = time.monotonic()
        if on_batch is not None and run.stats["model"].items == 0:
            on_batch()
        heard = sum(window.seconds > 0 for window in item)
        texts = _decode(run, decoder, item)
        del item  # the batch's features can go
        run.busy("model", 0, since, items=heard)
        for text in texts:
            finished.put(text)


def _decode(run: _Run, decoder: WindowDecoder, windows: list[Window]) -> list[PieceText]:
    """Decode ``windows``; on out-of-memory, in halves (here and for the batches to come), through
    :func:`whisperkit.core.batching.halving_on_out_of_memory` as every batched path."""
    from whisperkit.core.batching import halving_on_out_of_memory

    started = [0.0]

    def attempt(size: int | None) -> list[PieceText]:
        started[0] = time.monotonic()
        step = max(1, size or 1)
        return [text for start in range(0, len(windows), step) for text in decoder(windows[start:start + step])]

    def smaller(size: int) -> None:
        run.retry_seconds += time.monotonic() - started[0]
        run.batch_size = min(run.batch_size, size)

    return halving_on_out_of_memory(attempt, min(run.batch_size, len(windows)), device=decoder.device,
                                    retries=run.batch_retries, on_retry=smaller)


def _writer(run: _Run, finished: queue.Queue, sources: list[Source], on_file) -> None:
    by_index = {source.index: source for source in sources}
    pending: dict[int, list[PieceText]] = {}
    failed: set[int] = set()
    while True:
        item = finished.get()
        if item is _END:
            return
        since = time.monotonic()
        if isinstance(item, Failure):
            failed.add(item.source)
            pending.pop(item.source, None)
            on_file(by_index[item.source], item, [])
            run.busy("write", 0, since)
            continue
        if item.source in failed:
            continue
        texts = pending.setdefault(item.source, [])
        texts.append(item)
        if is_complete(texts):
            del pending[item.source]
            source = by_index[item.source]
            on_file(source, assemble(source.path, texts, {}, time.monotonic() - run.started), texts)
            run.busy("write", 0, since)
