"""Many short files: sequential per file, batched per file, and batched across files.

A short file is one chunk, so batching it alone has nothing to batch; ``transcribe_clips``
batches across files. Same loaded model, alternating, several repeats, medians; raw
faster-whisper per file (sequential) is the baseline the ratios are taken against.

    .venv/bin/python benchmarks/clips.py [--repeats 5] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import whisperkit as wk
from whisperkit.core.samples import short_clips


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    model = wk.load_model()
    clips = short_clips()
    audio_seconds = sum(wk.load_audio(path).seconds for path in clips)
    ways = {
        "raw faster-whisper, sequential per file": lambda: [list(model.whisper.transcribe(p, beam_size=5)[0]) for p in clips],
        "whisperkit sequential per file": lambda: [wk.transcribe(p, model=model, mode="sequential", progress=False) for p in clips],
        "whisperkit batched per file": lambda: [wk.transcribe(p, model=model, mode="batched", progress=False) for p in clips],
        f"whisperkit batched across files ({args.batch_size})": lambda: wk.transcribe_clips(
            clips, model=model, batch_size=args.batch_size, progress=False),
    }
    times = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            times[name].append(timed(way))
    baseline = statistics.median(next(iter(times.values())))
    print(f"{len(clips)} clips, {audio_seconds:.1f} s of speech, {model.name} on {model.device} ({model.compute_type}), "
          f"{args.repeats} alternating repeats")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<45} median {median:6.2f} s  RTFx {audio_seconds / median:5.1f}  ratio to raw {median / baseline:.3f}")


if __name__ == "__main__":
    main()
