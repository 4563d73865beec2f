"""A corpus: per-file batched transcribe vs across files vs packed windows, and one long file.

Corpus A: 60 short clips of synthetic speech (the ten bundled Aesop clips, each in six
variants: other gain, silence around it, light noise; named so that neighbours in the folder
are different sentences), references known. Corpus B: the same
clips plus two long files (the Gettysburg address, and it repeated for five minutes). Ways, on
one loaded model, alternating, ``--repeats`` times, medians:

- per file: ``wk.transcribe(path, mode="batched", batch_size=B)`` for each file
- across files: ``wk.transcribe_corpus(files, pack=False, batch_size=B)``
- packed: ``wk.transcribe_corpus(files, pack=True, batch_size=B)``

For each: wall seconds, RTFx, per-clip WER (mean over the clips), peak RSS growth (MiB, sampled
every 20 ms, above the RSS before the run). Then a single long file (Gettysburg repeated for
``--long-minutes``): corpus mode vs batched ``transcribe``, and the WER between their words.

    .venv/bin/python benchmarks/corpus.py [--repeats 3] [--batch-size 8] [--long-minutes 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import wave

import numpy as np

import whisperkit as wk
from whisperkit.core.samples import reference_text, short_clips

VARIANTS = [  # (gain, seconds of silence before, after, noise amplitude)
    (1.0, 0.0, 0.0, 0.0), (0.5, 0.3, 0.2, 0.0), (1.4, 0.1, 0.6, 0.0),
    (0.8, 0.5, 0.1, 0.002), (1.0, 0.2, 0.4, 0.004), (0.6, 0.8, 0.3, 0.001),
]


def write_wav(path: str, samples) -> None:
    with wave.open(path, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def make_clips(folder: str) -> dict[str, str]:
    """60 clips in ``folder``; returns path -> reference text."""
    rng = np.random.default_rng(0)
    references = {}
    clips = {clip: wk.load_audio(clip).samples for clip in short_clips()}
    for number, (gain, before, after, noise) in enumerate(VARIANTS):  # neighbours are different sentences
        for clip, samples in clips.items():
            padded = np.concatenate([np.zeros(int(before * 16000)), samples * gain, np.zeros(int(after * 16000))])
            padded = padded + rng.standard_normal(len(padded)) * noise
            path = os.path.join(folder, f"{number}_{os.path.basename(clip)[:-5]}.wav")
            write_wav(path, padded)
            references[path] = reference_text(clip)
    return references


def make_long(folder: str, minutes: float) -> tuple[str, str]:
    speech = wk.load_audio(wk.sample_path()).samples
    repeats = max(1, int(minutes * 60 / (len(speech) / 16000)))
    path = os.path.join(folder, f"long_{minutes:g}min.wav")
    write_wav(path, np.tile(speech, repeats))
    return path, " ".join([reference_text(wk.sample_path())] * repeats)


class PeakRss:
    """Peak resident memory growth (MiB) of this process while the block runs."""

    def __enter__(self):
        import psutil

        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.growth_mib = (self.peak - self.base) / 2**20


def per_file(model, files, batch_size):
    return {path: wk.transcribe(path, model=model, mode="batched", batch_size=batch_size, progress=False).text
            for path in files}


def corpus(model, files, batch_size, pack):
    result = wk.transcribe_corpus(files, model, batch_size=batch_size, pack=pack, progress=False)
    return {path: t.text for path, t in result.transcripts.items()}


def compare(title, model, files, references, audio_seconds, repeats, batch_size) -> None:
    ways = {
        "per file, batched transcribe": lambda: per_file(model, files, batch_size),
        "across files, no packing": lambda: corpus(model, files, batch_size, pack=False),
        "across files, packed": lambda: corpus(model, files, batch_size, pack=True),
    }
    times = {name: [] for name in ways}
    peaks = {name: [] for name in ways}
    texts = {}
    for _ in range(repeats):
        for name, way in ways.items():
            with PeakRss() as rss:
                started = time.perf_counter()
                texts[name] = way()
                times[name].append(time.perf_counter() - started)
            peaks[name].append(rss.growth_mib)
    base = statistics.median(times["per file, batched transcribe"])
    print(f"\n{title}: {len(files)} files, {audio_seconds:.0f} s of audio, batch size {batch_size}, "
          f"{repeats} alternating repeats (medians)")
    for name in ways:
        median = statistics.median(times[name])
        clips = [p for p in references if p in texts[name]]
        wer = statistics.mean(wk.word_error_rate(references[p], texts[name][p]) for p in clips)
        print(f"  {name:<30} {median:7.2f} s  RTFx {audio_seconds / median:6.1f}  speed-up {base / median:4.2f}x  "
              f"per-clip WER {wer:.3f}  peak RSS +{max(peaks[name]):.0f} MiB")


def long_file(model, path, reference, repeats, batch_size) -> None:
    audio_seconds = wk.load_audio(path).seconds
    ways = {
        "batched transcribe": lambda: wk.transcribe(path, model=model, batch_size=batch_size, progress=False).text,
        "corpus": lambda: wk.transcribe_corpus(path, model, batch_size=batch_size, progress=False)
        .transcripts[path].text,
    }
    times = {name: [] for name in ways}
    texts = {}
    for _ in range(repeats):
        for name, way in ways.items():
            started = time.perf_counter()
            texts[name] = way()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["batched transcribe"])
    print(f"\nOne long file: {audio_seconds:.0f} s, batch size {batch_size}, {repeats} alternating repeats (medians)")
    for name in ways:
        median = statistics.median(times[name])
        print(f"  {name:<30} {median:7.2f} s  RTFx {audio_seconds / median:6.1f}  ratio to batched "
              f"{median / base:.3f}  WER {wk.word_error_rate(reference, texts[name]):.3f}")
    between = wk.word_error_rate(texts["batched transcribe"], texts["corpus"])
    print(f"  WER between the two transcripts: {between:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--skip-mix", action="store_true", help="only the 60 clips and the long file")
    args = parser.parse_args()
    model = wk.load_model()
    print(f"{model.name} on {model.device} ({model.compute_type}), {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as folder:
        references = make_clips(folder)
        clips = list(references)
        seconds = sum(wk.load_audio(p).seconds for p in clips)
        per_file(model, clips[:2], args.batch_size)  # warm up
        compare("60 short clips", model, clips, references, seconds, args.repeats, args.batch_size)
        if not args.skip_mix:
            long_path, _ = make_long(folder, 5)
            mix = [*clips, wk.sample_path(), long_path]
            mix_seconds = seconds + sum(wk.load_audio(p).seconds for p in mix[-2:])
            compare("60 clips and two long files", model, mix, references, mix_seconds, args.repeats, args.batch_size)
        path, reference = make_long(folder, args.long_minutes)
        long_file(model, path, reference, args.repeats, args.batch_size)


if __name__ == "__main__":
    main()
