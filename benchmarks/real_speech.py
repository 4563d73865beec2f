"""Real human speech for the benchmarks and tests: where it lies, its files, and short clips cut from it.

The folder (36 clips of 2-27 s and two recordings of 68 s and 152 s, LibriSpeech, LJ Speech,
LibriVox and two spontaneous recordings, each ``X.flac`` with its reference in ``X.txt``; sources
and licences in its ``SOURCES.md``) is not part of whisperkit: its licences ask for attribution and
it is not ours to ship. It is read where it lies, never copied into the repository:

1. ``$WHISPERKIT_REAL_SPEECH`` when set;
2. else ``../shared/data/real-speech`` relative to the repository root.

:func:`cut_short_clips` cuts clips of a few words (0.3-3 s) at the word times faster-whisper
gives with the bundled model, into a temporary folder, with the reference words of each clip.
"""

from __future__ import annotations

import os
import wave
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV_VARIABLE = "WHISPERKIT_REAL_SPEECH"
DEFAULT_FOLDER = REPO_ROOT.parent / "shared" / "data" / "real-speech"
SAMPLING_RATE = 16000
SHORTEST_CLIP_S = 0.3  # the short clips last 0.3-3 s
LONGEST_CLIP_S = 3.0
PAD_S = 0.05  # silence kept on each side of a cut, at most (half the gap to the next word)


def real_speech_folder(folder: str | os.PathLike | None = None) -> Path | None:
    """The real-speech folder: ``folder`` when given, else the environment variable, else the
    default beside the repository; None where that folder does not exist."""
    chosen = Path(folder or os.environ.get(ENV_VARIABLE) or DEFAULT_FOLDER)
    return chosen if (chosen / "short").is_dir() else None


def absent_message(folder: str | os.PathLike | None = None) -> str:
    """What to say when the folder is not there."""
    where = folder or os.environ.get(ENV_VARIABLE) or DEFAULT_FOLDER
    return (f"no real speech at {where} (a folder with short/ and long/ of .flac files and .txt references); "
            f"give --folder DIR or set {ENV_VARIABLE}")


def with_references(folder: Path) -> dict[str, str]:
    """Each ``.flac`` in ``folder`` (sorted) that has a ``.txt`` reference beside it: path -> text."""
    found = {}
    for audio in sorted(folder.glob("*.flac")):
        text = audio.with_suffix(".txt")
        if text.is_file():
            found[str(audio)] = text.read_text(encoding="utf-8").strip()
    return found


@dataclass
class ShortClip:
    """A clip cut from a real recording: ``path`` (16 kHz WAV), its ``reference`` words (the
    model's words at the cut, aligned to the published reference), and ``seconds``."""

    path: str
    reference: str
    seconds: float
    source: str


def _write_wav(path: str, samples) -> None:
    import numpy as np

    with wave.open(path, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLING_RATE)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def _reference_words(reference: str, hypothesis_words: list[str]) -> list[str | None]:
    """For each hypothesis word, the published reference word aligned to it (None where the
    alignment has none): the cut clip's reference comes from the published text, not the model."""
    import jiwer

    from whisperkit.core.accuracy import normalize

    ref = reference.split()
    normalized = [normalize(word) for word in hypothesis_words]
    hyp_norm = [word if word and " " not in word else "<none>" for word in normalized]  # one word to one word only
    out: list[str | None] = [None] * len(hypothesis_words)
    alignment = jiwer.process_words(" ".join(ref), " ".join(hyp_norm)).alignments[0]
    for chunk in alignment:
        if chunk.type in ("equal", "substitute"):
            for offset in range(chunk.ref_end_idx - chunk.ref_start_idx):
                out[chunk.hyp_start_idx + offset] = ref[chunk.ref_start_idx + offset]
    return out


def cut_short_clips(folder: Path, into: str | os.PathLike, model=None, words_per_clip: int | tuple[int, ...] = 2,
                    limit: int | None = None, sources: int | None = None,
                    seconds: tuple[float, float] = (SHORTEST_CLIP_S, LONGEST_CLIP_S)) -> list[ShortClip]:
    """Clips of ``words_per_clip`` consecutive words (one number or several), ``seconds`` long
    (0.3-3 s by default), cut from the short recordings of ``folder`` (the first ``sources`` of
    them, sorted; None: all) at the word times faster-whisper gives (bundled model,
    ``word_timestamps=True``), written to ``into`` as WAV. A clip is kept only where every one of
    its words lines up with a word of the published reference (so its reference is that text, not
    the model's), and it starts and ends in the silence between two words, at most ``PAD_S`` from
    them. ``limit``: at most this many clips in all."""
    import numpy as np

    import whisperkit as wk
    from whisperkit.core.accuracy import normalize

    whisper = wk.load_model(model).whisper
    counts = (words_per_clip,) if isinstance(words_per_clip, int) else tuple(words_per_clip)
    clips: list[ShortClip] = []
    for source, reference in list(with_references(folder / "short").items())[:sources]:
        samples = wk.load_audio(source).samples
        total = len(samples) / SAMPLING_RATE
        segments, _ = whisper.transcribe(samples, beam_size=5, word_timestamps=True, language="en")
        words = [w for s in segments for w in (s.words or [])]
        aligned = _reference_words(normalize(reference), [w.word for w in words])
        for count in counts:
            for first in range(0, len(words) - count + 1, count):
                last = first + count - 1
                if any(aligned[i] is None for i in range(first, last + 1)):
                    continue
                before = words[first - 1].end if first > 0 else 0.0
                after = words[last + 1].start if last + 1 < len(words) else total
                start = max(before, words[first].start - min(PAD_S, (words[first].start - before) / 2))
                end = min(after, words[last].end + min(PAD_S, (after - words[last].end) / 2))
                if not seconds[0] <= end - start <= seconds[1]:
                    continue
                path = os.path.join(os.fspath(into), f"{Path(source).stem}-{count}w-{first:03d}.wav")
                _write_wav(path, np.asarray(samples[int(start * SAMPLING_RATE):int(end * SAMPLING_RATE)]))
                clips.append(ShortClip(path, " ".join(aligned[i] or "" for i in range(first, last + 1)),
                                       float(end - start), source))
                if limit is not None and len(clips) >= limit:
                    return clips
    return clips
