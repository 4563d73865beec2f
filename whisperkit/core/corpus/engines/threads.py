"""The thread engine (``engine="local"``): the corpus pipeline's stages on threads of this process.

``reader_threads`` readers -> piece queue -> one packer (packing and features, forming batches
of ``batch_size`` windows across files) -> batch queue -> the model, in the calling thread ->
text queue (words only) -> one writer. The queues that carry audio are bounded, so a slow model
holds the CPU stages back instead of letting decoded audio pile up.

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
(on a CPU it does not grow with the length of a file: ``pytest tests/core/corpus/test_corpus.py -k
memory_stays_bounded`` measures it against batched ``transcribe``, and the README's "Measured
here" table quotes a run), and the transcripts (text) of the files done, kept for the result.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from whisperkit.checks import check_whole
from whisperkit.core.corpus.decoding import PieceText, WindowDecoder, assemble, is_complete, packing_is_safe
from whisperkit.core.corpus.engines.base import DecodeState, EngineRun, OnFile, Span, StageStats, decode_fitting
from whisperkit.core.corpus.stages import Batcher, Failure, Packer, Source, Window, add_features, read_pieces

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.core.models import Model

QUEUED_BATCHES = 2  # batches ready and waiting for the model
POLL_SECONDS = 0.2  # how often a blocked thread looks whether the run was stopped
MAX_SPANS = 200_000  # stage spans kept for the timeline
MAX_READER_THREADS = 64
_END = object()  # marks the end of a queue


def default_reader_threads() -> int:
    """Half the CPU cores, 1 to 4."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class ThreadEngine:
    """The :class:`~whisperkit.core.corpus.engines.base.Engine` of threads in this process, with
    one model (loaded here from ``config``, or the ``model`` given)."""

    name = "local"

    def __init__(self, config: Config, model: Model | object | None = None, *, reader_threads: int | None = None) -> None:
        from whisperkit.core.batching import recommend_for_model
        from whisperkit.core.models import Model as LoadedModel
        from whisperkit.core.models import check_model_language, load_model, wrap_whisper_model

        self.reader_threads = default_reader_threads() if reader_threads is None else check_whole(
            reader_threads, "reader_threads", 1, MAX_READER_THREADS)
        if model is None:
            model = load_model(config.model, config.device, config.compute_type, config.num_workers,
                               config.cpu_threads, config.device_index)
            self.load_seconds = model.load_seconds
        else:
            model = model if isinstance(model, LoadedModel) else wrap_whisper_model(model)
            self.load_seconds = 0.0
        check_model_language(model, config.language)
        self.model = model
        self.pack = config.pack and packing_is_safe(model, config.language)
        self.batch_size = (recommend_for_model(model, beam_size=config.beam_size) if config.batch_size == "auto"
                           else int(config.batch_size))
        self.decoder = WindowDecoder(model, language=config.language, beam_size=config.beam_size, options=config.options)
        self.model_settings = model.describe()
        self.info = {"reader_threads": self.reader_threads}

    def run(self, sources: list[Source], on_file: OnFile, on_batch: Callable[[], None] | None = None) -> EngineRun:
        """Run the stages over ``sources`` on threads; ``on_file`` is called on the writer thread
        as each file completes. Raises what a stage raised (KeyboardInterrupt stops the readers
        and lets the writer finish the files already complete)."""
        unpacked_before = self.decoder.unpacked
        try:
            state = run_threads(sources, self.decoder, self.decoder.feature_extractor, batch_size=self.batch_size,
                                pack=self.pack, reader_threads=self.reader_threads, on_file=on_file, on_batch=on_batch)
        finally:
            self.unpacked = self.decoder.unpacked - unpacked_before
        return EngineRun(stats=state.stats, spans=state.spans, windows=state.windows, pieces=state.pieces_read,
                         unpacked_windows=self.unpacked, batch_size=state.decoding.batch_size,
                         batch_retries=state.decoding.batch_retries, retry_seconds=state.decoding.retry_seconds)


class _Run:
    """The shared state of one threaded run: queues, stop flag, clocks and spans."""

    def __init__(self, batch_size: int, reader_threads: int):
        self.batch_size = batch_size
        self.pieces: queue.Queue = queue.Queue(maxsize=2 * batch_size)
        self.batches: queue.Queue = queue.Queue(maxsize=QUEUED_BATCHES)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.started = time.monotonic()
        self.stats = {"read": StageStats(reader_threads), "pack": StageStats(1), "model": StageStats(1),
                      "write": StageStats(1)}
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        self.decoding = DecodeState(batch_size)
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


def run_threads(sources: list[Source], decoder: WindowDecoder, feature_extractor: Callable, *, batch_size: int,
                pack: bool, reader_threads: int, on_file: OnFile, on_batch: Callable[[], None] | None = None) -> _Run:
    """Run the stages over ``sources`` on threads (see the module docstring); the run's state."""
    run = _Run(batch_size, reader_threads)
    todo: queue.Queue = queue.Queue()
    for source in sources:
        todo.put(source)
    finished: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_guard(run, _reader), args=(run, todo, number), daemon=True,
                                name=f"whisperkit-read-{number}") for number in range(reader_threads)]
    threads.append(threading.Thread(target=_guard(run, _packer), args=(run, pack, reader_threads, feature_extractor),
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


def _packer(run: _Run, pack: bool, reader_threads: int, feature_extractor) -> None:
    """Packing and features; batches of packed windows and of single-piece windows form apart,
    so that only the packed ones pay for word timestamps."""
    packer = Packer(pack)
    batcher = Batcher(run.batch_size)
    ended = 0
    while ended < reader_threads:
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
        texts = decode_fitting(run.decoding, decoder, item)
        del item  # the batch's features can go
        run.busy("model", 0, since, items=heard)
        for text in texts:
            finished.put(text)


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
