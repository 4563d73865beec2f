"""Accuracy on real human speech: per-clip WER of each way whisperkit transcribes, and the long recordings.

Reads a folder of ``short/`` clips and ``long/`` recordings, each ``X.flac`` with its reference in
``X.txt`` (default: the real-speech folder, see ``benchmarks/real_speech.py``; it is read where it
lies, never copied). With one loaded model, for the short clips:

- sequential: ``wk.transcribe(path, mode="sequential")`` for each clip;
- batched per file: ``wk.transcribe(path, mode="batched", batch_size=B)`` for each clip;
- corpus across files: ``wk.transcribe_corpus(clips, pack=False, batch_size=B)``;
- corpus packed: ``wk.transcribe_corpus(clips, pack=True, batch_size=B)``;

then the same four on each long recording. WER is whisperkit's (``wk.word_error_rate``: Whisper's
English normaliser, ``whisper_normalizer.english.EnglishTextNormalizer``, on both sides, then
jiwer). Two figures per way: the per-clip WER is the mean of each clip's WER (a word wrong in a
4-word clip counts 0.25), the pooled WER all clips' errors over all their reference words
(``whisperkit.core.accuracy.pooled_word_error_rate``). Wall seconds are medians of ``--repeats``
alternating runs, with their range and each way's ratio to batched per file.

    .venv/bin/python benchmarks/accuracy.py [--folder DIR] [--batch-size 8] [--repeats 1] [--per-clip] [--no-long]
    .venv/bin/python benchmarks/accuracy.py --short-words 2   # also clips of 2 words (0.3-3 s) cut from it
    .venv/bin/python benchmarks/accuracy.py --short-words 2 --no-clips --no-long --ways per-file,across,packed
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import whisperkit as wk  # noqa: E402
from benchmarks.real_speech import absent_message, cut_short_clips, real_speech_folder, with_references  # noqa: E402
from whisperkit.core.accuracy import pooled_word_error_rate  # noqa: E402

NORMALIZER = "whisper_normalizer.english.EnglishTextNormalizer (Whisper's English normaliser), then jiwer"
BASELINE = "batched per file"


WAY_KEYS = {"sequential": "sequential", "per-file": BASELINE, "across": "corpus across files",
            "packed": "corpus packed"}  # --ways names


def ways(model, batch_size: int, only: tuple[str, ...] = tuple(WAY_KEYS.values())) -> dict:
    """Each way (those named in ``only``): files -> {path: text}."""
    def one_by_one(mode):
        return lambda files: {p: wk.transcribe(p, model=model, mode=mode, batch_size=batch_size, progress=False).text
                              for p in files}

    def corpus(pack):
        return lambda files: {p: t.text for p, t in wk.transcribe_corpus(
            files, model, batch_size=batch_size, pack=pack, progress=False).transcripts.items()}

    every = {"sequential": one_by_one("sequential"), BASELINE: one_by_one("batched"),
             "corpus across files": corpus(False), "corpus packed": corpus(True)}
    return {name: way for name, way in every.items() if name in only}


def measure(model, references: dict[str, str], batch_size: int, repeats: int,
            only: tuple[str, ...] = tuple(WAY_KEYS.values())) -> dict[str, dict]:
    """Per way: median wall seconds, mean per-clip WER and the per-clip WERs.

    >>> results = measure(wk.load_model(), with_references(real_speech_folder() / "short"), 8, 1)  # doctest: +SKIP
    >>> {name: round(r["wer"], 3) for name, r in results.items()}  # doctest: +SKIP
    """
    files = list(references)
    times: dict[str, list[float]] = {name: [] for name in ways(model, batch_size, only)}
    texts: dict[str, dict[str, str]] = {}
    for repeat in range(repeats):
        order = list(ways(model, batch_size, only).items())
        for name, way in order if repeat % 2 == 0 else reversed(order):
            started = time.perf_counter()
            texts[name] = way(files)
            times[name].append(time.perf_counter() - started)
    results = {}
    for name in times:
        wers = {p: wk.word_error_rate(references[p], texts[name].get(p, "")) for p in files}
        pooled = pooled_word_error_rate((references[p], texts[name].get(p, "")) for p in files)
        results[name] = {"wall_s": statistics.median(times[name]), "wall_range": (min(times[name]), max(times[name])),
                         "wer": statistics.mean(wers.values()), "pooled_wer": pooled, "wers": wers}
    return results


def report(title: str, results: dict[str, dict], audio_seconds: float, files: int) -> None:
    base = results[BASELINE]["wall_s"] if BASELINE in results else float("nan")
    print(f"\n{title}: {files} file(s), {audio_seconds:.0f} s of real speech")
    print(f"  {'way':<22}{'per-clip WER':>13}{'pooled WER':>11}{'wall s':>9}{'min-max':>14}{'RTFx':>7}"
          f"{'time vs ' + BASELINE:>27}")
    for name, figures in results.items():
        low, high = figures["wall_range"]
        print(f"  {name:<22}{figures['wer']:>13.3f}{figures['pooled_wer']:>11.3f}{figures['wall_s']:>9.2f}"
              f"{f'{low:.1f}-{high:.1f}':>14}{audio_seconds / figures['wall_s']:>7.1f}{figures['wall_s'] / base:>26.2f}x")
    print("  per-clip WER: the mean of each clip's WER; pooled WER: all clips' errors over all their reference words")


def per_clip(results: dict[str, dict]) -> None:
    """Each clip's WER under each way."""
    names = list(results)
    print("  " + f"{'clip':<28}" + "".join(f"{name:>22}" for name in names))
    for path in results[names[0]]["wers"]:
        print("  " + f"{Path(path).stem:<28}" + "".join(f"{results[n]['wers'][path]:>22.3f}" for n in names))


def by_length(results: dict[str, dict], seconds: dict[str, float]) -> None:
    """Per-clip WER of each way by clip length, in bins."""
    bins = [(lo, hi) for lo, hi in ((0.3, 1.0), (1.0, 2.0), (2.0, 3.0), (3.0, 4.0), (4.0, 6.0), (6.0, 9.0), (9.0, 30.0))
            if any(lo <= s < hi for s in seconds.values())]
    print(f"  {'per-clip WER by length':<22}" + "".join(f"{f'{lo:g}-{hi:g} s':>14}" for lo, hi in bins))
    for name, figures in results.items():
        cells = []
        for lo, hi in bins:
            inside = [w for p, w in figures["wers"].items() if lo <= seconds[p] < hi]
            cells.append(f"{statistics.mean(inside):.3f} ({len(inside)})" if inside else "-")
        print(f"  {name:<22}" + "".join(f"{cell:>14}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=None, help="short/ and long/ of .flac with .txt references")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--short-words", default="",
                        help="also clips of this many words (comma-separated numbers) cut at word times from the short clips")
    parser.add_argument("--short-seconds", default="0.3,3", help="the cut clips' shortest and longest seconds (default 0.3,3)")
    parser.add_argument("--short-sources", type=int, default=None,
                        help="cut the --short-words clips from only the first N recordings (sorted)")
    parser.add_argument("--no-long", action="store_true", help="leave out the long recordings")
    parser.add_argument("--no-clips", action="store_true", help="leave out the 36 clips as they are")
    parser.add_argument("--ways", default=",".join(WAY_KEYS), help=f"comma-separated, of: {', '.join(WAY_KEYS)}")
    parser.add_argument("--per-clip", action="store_true", help="also each clip's WER under each way")
    args = parser.parse_args()
    only = tuple(WAY_KEYS[key.strip()] for key in args.ways.split(","))
    folder = real_speech_folder(args.folder)
    if folder is None:
        print(f"benchmarks/accuracy.py: {absent_message(args.folder)}")
        return
    model = wk.load_model()
    print(f"real speech from {folder} (read where it lies); {model.name} on {model.device} ({model.compute_type}), "
          f"beam 5, batch size {args.batch_size}, {args.repeats} repeat(s), {os.cpu_count()} CPU cores")
    print(f"WER normaliser: {NORMALIZER}")
    short = with_references(folder / "short")
    wk.transcribe(next(iter(short)), model=model, progress=False)  # warm up
    seconds = {p: wk.load_audio(p).seconds for p in short}
    if not args.no_clips:
        results = measure(model, short, args.batch_size, args.repeats, only)
        report("Short clips", results, sum(seconds.values()), len(short))
        if args.per_clip:
            per_clip(results)
    if not args.no_long:
        long = with_references(folder / "long")
        results = measure(model, long, args.batch_size, args.repeats, only)
        report("Long recordings (WER per recording, mean)", results, sum(wk.load_audio(p).seconds for p in long), len(long))
        for path in long:
            print(f"  {Path(path).stem}: " + ", ".join(f"{name} {figures['wers'][path]:.3f}" for name, figures in results.items()))
    if args.short_words:
        with tempfile.TemporaryDirectory(prefix="wk-short-clips-") as into:
            counts = tuple(int(n) for n in args.short_words.split(","))
            lo, hi = (float(x) for x in args.short_seconds.split(","))
            clips = cut_short_clips(folder, into, words_per_clip=counts, sources=args.short_sources, seconds=(lo, hi))
            references = {clip.path: clip.reference for clip in clips}
            lengths = {clip.path: clip.seconds for clip in clips}
            results = measure(model, references, args.batch_size, args.repeats, only)
            report(f"Clips of {args.short_words} words cut at word times ({lo:g}-{hi:g} s, in a temporary folder)",
                   results, sum(lengths.values()), len(clips))
            by_length(results, lengths)


if __name__ == "__main__":
    main()
