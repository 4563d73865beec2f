"""The model stage of the corpus pipeline: a batch of windows -> each piece's segments.

:class:`WindowDecoder` calls ``BatchedInferencePipeline.forward`` (faster-whisper's own batched
decode: one encoder call and one ``generate`` for the whole batch) on windows whose features the
CPU stages computed. A window holding one piece decodes as ``BatchedInferencePipeline.transcribe``
does (no timestamps, one segment per window). A batch with a packed window decodes with
``word_timestamps=True``, and each word goes to the piece whose span in the window holds the
word's midpoint (a word in the gap after a piece goes to that piece); a piece's words become
its segments. :func:`assemble` joins a file's pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from whisperkit.core.config import Settings
from whisperkit.core.corpus.stages import Piece, Place, Window
from whisperkit.core.models import Model
from whisperkit.core.transcription import Segment, Transcript
from whisperkit.core.whisper_internals import batched_forward
from whisperkit.errors import ConfigError

MIN_WORDS_PER_SECOND = 0.5  # fewer in a packed piece: the model skipped it; decode it alone
MAX_WORDS_PER_SECOND = 6.0  # more in a packed piece (plus one word): the model repeated itself; decode it alone
LOOP_REPEATS = 3  # a run of 1-4 words said this many times in a row in a packed piece: a loop; decode it alone
# options the corpus pipeline sets itself
RESERVED_OPTIONS = ("vad_filter", "vad_parameters", "clip_timestamps", "batch_size", "word_timestamps",
                    "multilingual", "chunk_length", "log_progress")


@dataclass
class PieceText:
    """What the model heard in one piece: ``segments`` in seconds from the start of its file.

    Carries the piece's ``source``, ``number`` and, on the ``last`` piece, the file's
    ``audio_seconds`` and ``warnings``, so that a file is complete when pieces 0 .. last arrived;
    ``batch_size`` is the size of the batch that decoded it (None until decoded).
    """

    source: int
    number: int
    segments: list[Segment]
    last: bool = False
    audio_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    language: str | None = None
    batch_size: int | None = None


class EncodeOneByOne:
    """A faster-whisper ``WhisperModel`` whose ``encode`` runs one window at a time, the outputs
    joined into the batch's: on a CPU a batched encoder call is no faster per window (measured by
    ``benchmarks/batching_split.py``, tiny.en int8 on 2 cores: 0.17 s per window one by one,
    0.30 s in a batch of 8) and holds the attention matrices of every window at once, while the
    decoder's steps still gain from the batch. Everything else is the model's."""

    def __init__(self, whisper: Any) -> None:
        self._whisper = whisper

    def __getattr__(self, name: str) -> Any:
        return getattr(self._whisper, name)

    def encode(self, features: Any) -> Any:
        import ctranslate2
        import numpy as np

        if features.ndim == 2 or len(features) == 1:
            return self._whisper.encode(features)
        parts = [np.asarray(self._whisper.encode(features[i:i + 1])) for i in range(len(features))]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))


class WindowDecoder:
    """Decode batches of windows with one loaded model; call it with a list of windows.

    ``language`` None on a multilingual model detects the language of each window (faster-whisper's
    ``multilingual=True``) and reports it as unknown; packing is then unsafe (see
    :func:`packing_is_safe`). ``options`` are further ``BatchedInferencePipeline.transcribe``
    decoding keywords (``temperature``, ``initial_prompt``, ``hotwords``, ...).
    """

    def __init__(self, model: Model, *, language: str | None = None, beam_size: int = 5,
                 options: dict | None = None) -> None:
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.tokenizer import Tokenizer

        options = dict(options or {})
        reserved = sorted(set(RESERVED_OPTIONS) & set(options))
        if reserved:
            raise ConfigError(f"the corpus pipeline sets {', '.join(reserved)} itself; leave them out")
        whisper: Any = model.whisper
        self.multilingual = bool(whisper.model.is_multilingual) and language is None
        self.pipeline = BatchedInferencePipeline(EncodeOneByOne(whisper) if model.device == "cpu" else whisper)
        self.feature_extractor = whisper.feature_extractor  # for add_features
        self.frames_per_second = int(whisper.frames_per_second)
        self.device = model.device
        self.unpacked = 0  # windows decoded again one piece each (see __call__)
        self.plain, found = self._options(language, beam_size, options, word_timestamps=False)
        self.words, _ = self._options(language, beam_size, options, word_timestamps=True)
        self.language = None if self.multilingual else found
        task = options.get("task", "transcribe")
        self.tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task=task, language=found)

    def _options(self, language, beam_size, options, word_timestamps):
        """faster-whisper's own TranscriptionOptions, from a call on 0.1 s of silence that never decodes."""
        import numpy as np

        _, info = self.pipeline.transcribe(
            np.zeros(1600, dtype=np.float32),
            language=language or ("en" if self.multilingual else None),
            beam_size=beam_size,
            vad_filter=False,
            clip_timestamps=[{"start": 0.0, "end": 0.1}],
            word_timestamps=word_timestamps,
            multilingual=self.multilingual,
            **options,
        )
        return info.transcription_options, info.language

    def __call__(self, windows: list[Window]) -> list[PieceText]:
        """One model call for ``windows`` (their features set); each piece's text (two calls
        where packed and single-piece windows come mixed).

        Where a piece of a packed window got fewer than ``MIN_WORDS_PER_SECOND`` words per
        second of its audio, that piece and the one after it are decoded again, one piece per
        window (the model sometimes skips a sentence of a packed window, and the next piece's
        first words then drift into its span); a piece whose text repeats itself (more than
        ``MAX_WORDS_PER_SECOND`` words per second, or a run of words ``LOOP_REPEATS`` times in
        a row) is decoded again alone. The window's other pieces keep their words.
        """
        kinds = {window.packed for window in windows}
        if len(kinds) > 1:  # packed windows need word timestamps, single-piece ones do not: one call each
            return [text for kind in (True, False) for text in self([w for w in windows if w.packed is kind])]
        outputs = self._forward(windows)
        texts: list[PieceText] = []
        again: list[Window] = []
        for window, output in zip(windows, outputs):
            found = split_window(window, output, self.language)
            redo = _redo(window, found) if window.packed else set()
            texts.extend(text for index, text in enumerate(found) if index not in redo)
            again.extend(unpack(window, self.frames_per_second, sorted(redo)))
        self.unpacked += len(again)
        for start in range(0, len(again), max(1, len(windows))):
            part = again[start:start + max(1, len(windows))]
            for window, output in zip(part, self._forward(part)):
                texts.extend(split_window(window, output, self.language))
        return texts

    def _forward(self, windows: list[Window]) -> list[list[dict]]:
        """faster-whisper's segments (dicts) of each window; none for a window with nothing to hear."""
        import numpy as np

        heard = [window for window in windows if window.features is not None]
        if not heard:
            return [[] for _ in windows]
        options = self.words if any(window.packed for window in heard) else self.plain
        metadata = [{"offset": 0.0, "duration": window.seconds, "segments": []} for window in heard]
        features = np.stack([w.features for w in heard if w.features is not None])
        decoded = batched_forward(self.pipeline, features, self.tokenizer, metadata, options)
        by_window = dict(zip(map(id, heard), decoded))
        return [by_window.get(id(window), []) for window in windows]


def _redo(window: Window, texts: list[PieceText]) -> set[int]:
    """The pieces to decode again: each piece of at least a second that got fewer than
    ``MIN_WORDS_PER_SECOND`` words per second, and the piece after it (where its words drifted);
    each piece whose text repeats itself (:func:`repeats_itself`)."""
    redo: set[int] = set()
    for index, (place, text) in enumerate(zip(window.places, texts)):
        seconds = place.end - place.start
        words = [word for segment in text.segments for word in segment.text.split()]
        if seconds >= 1.0 and len(words) < MIN_WORDS_PER_SECOND * seconds:
            redo.update(i for i in (index, index + 1) if i < len(window.places))
        elif repeats_itself(words, seconds):
            redo.add(index)
    return redo


def repeats_itself(words: list[str], seconds: float) -> bool:
    """True for a piece's words that no speaker says in ``seconds``: more than
    ``MAX_WORDS_PER_SECOND`` words a second (plus one), or a run of 1-4 words said
    ``LOOP_REPEATS`` times in a row ("the door, the door, the door")."""
    if len(words) > MAX_WORDS_PER_SECOND * seconds + 1:
        return True
    plain = ["".join(c for c in word.lower() if c.isalnum() or c == "'") for word in words]
    for size in range(1, 5):
        for start in range(0, len(plain) - size * LOOP_REPEATS + 1):
            run = plain[start:start + size]
            if all(plain[start + k * size:start + (k + 1) * size] == run for k in range(1, LOOP_REPEATS)):
                return True
    return False


def unpack(window: Window, frames_per_second: int = 100, pieces: list[int] | None = None) -> list[Window]:
    """A packed window's pieces (``pieces``: their numbers in the window; None for all) as one
    window each, their features cut from the window's (and padded with zeros to 30 s, as
    ``BatchedInferencePipeline`` pads a short chunk's)."""
    from faster_whisper.audio import pad_or_trim

    single = []
    for index, place in enumerate(window.places):
        if pieces is not None and index not in pieces:
            continue
        if place.end <= place.start or window.features is None:
            continue
        first = round(place.start * frames_per_second)
        last = math.ceil(place.end * frames_per_second - 1e-6)
        features = pad_or_trim(window.features[:, first:last])
        single.append(Window(places=[Place(place.piece, 0.0, place.end - place.start)], features=features,
                             seconds=place.end - place.start))
    return single


def split_window(window: Window, segments: list[dict], language: str | None = None) -> list[PieceText]:
    """Give each piece of ``window`` its share of the decoded ``segments`` (faster-whisper's dicts,
    times in seconds of the window): by word midpoints where the segments have words, else whole
    segments (a window of one piece)."""
    found: list[list[Segment]] = [[] for _ in window.places]
    for segment in segments:
        if segment.get("words"):
            _split_words(window, segment["words"], found)
        elif segment["text"].strip() and window.places:
            index = _place_of(window, (segment["start"] + segment["end"]) / 2)
            _add(found[index], window, index, segment["start"], segment["end"], segment["text"])
    return [_piece_text(place.piece, segments_found, language) for place, segments_found in zip(window.places, found)]


def _split_words(window: Window, words: list[dict], found: list[list[Segment]]) -> None:
    """Consecutive words of one segment that fall in the same piece make one segment of it."""
    run: list[dict] = []
    run_index = -1
    for word in words:
        index = _place_of(window, (word["start"] + word["end"]) / 2)
        if run and index != run_index:
            _add_words(found[run_index], window, run_index, run)
            run = []
        run.append(word)
        run_index = index
    if run:
        _add_words(found[run_index], window, run_index, run)


def _add_words(segments: list[Segment], window: Window, index: int, words: list[dict]) -> None:
    text = "".join(word["word"] for word in words)
    _add(segments, window, index, words[0]["start"], words[-1]["end"], text)


def _add(segments: list[Segment], window: Window, index: int, start: float, end: float, text: str) -> None:
    text = text.strip()
    if not text:
        return
    place = window.places[index]
    length = place.end - place.start
    start_in_piece = min(max(0.0, start - place.start), length)
    end_in_piece = min(max(start_in_piece, end - place.start), length)
    piece = place.piece
    segments.append(Segment(round(float(piece.to_file_seconds(start_in_piece)), 3),
                            round(float(piece.to_file_seconds(end_in_piece)), 3), text, piece.channel))


def _place_of(window: Window, time_s: float) -> int:
    """The piece whose span holds ``time_s`` (seconds in the window); in a gap, the piece before
    it (word alignment tends to place a clip's last word late, into the silence after it)."""
    chosen = None
    for index, place in enumerate(window.places):
        if place.end <= place.start:
            continue
        if chosen is None or place.start <= time_s:
            chosen = index
        if time_s < place.end:
            break
    return 0 if chosen is None else chosen


def _piece_text(piece: Piece, segments: list[Segment], language: str | None) -> PieceText:
    return PieceText(piece.source, piece.number, segments, piece.last, piece.audio_seconds,
                     list(piece.warnings), language)


def packing_is_safe(model: Model, language: str | None) -> bool:
    """Packing puts several files in one window, decoded in one language: safe with a fixed
    ``language`` or an English-only model."""
    whisper: Any = model.whisper
    return language is not None or not bool(whisper.model.is_multilingual)


def assemble(path: str, texts: list[PieceText], config: dict, wall_seconds: float = 0.0) -> Transcript:
    """One file's :class:`Transcript` from all its pieces' texts (any order); a file split by
    channel has its channels' segments merged in time order. Its config is ``config`` with
    ``batch_size`` the smallest batch that decoded one of its pieces (where known)."""
    texts = sorted(texts, key=lambda text: text.number)
    last = texts[-1]
    segments = [segment for text in texts for segment in text.segments]
    sizes = [text.batch_size for text in texts if text.batch_size is not None]
    order: dict[str | None, int] = {channel: number for number, channel in enumerate(
        dict.fromkeys(segment.channel for segment in segments if segment.channel is not None))}
    if order:
        segments.sort(key=lambda segment: (segment.start, order.get(segment.channel, 0)))
    return Transcript(
        channels=[channel for channel in order if channel is not None],
        segments=segments,
        language=last.language,
        audio_seconds=last.audio_seconds,
        wall_seconds=wall_seconds,
        config=Settings({**config, **({"batch_size": min(sizes)} if sizes else {})}),
        audio_path=path,
        warnings=list(last.warnings),
    )


def is_complete(texts: list[PieceText]) -> bool:
    """True when the pieces 0 .. last of a file have all arrived."""
    last = [text for text in texts if text.last]
    return bool(last) and len(texts) == last[0].number + 1
