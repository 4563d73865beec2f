"""whisperkit's overhead against raw faster-whisper, same model, audio and settings, one process.

Runs raw ``WhisperModel.transcribe`` / ``BatchedInferencePipeline.transcribe`` (file path in,
segments listed) and ``whisperkit.transcribe`` on the same loaded model, alternating, several
repeats, and prints the median wall seconds of each and their ratio.

    .venv/bin/python benchmarks/transcribe_speed.py [--repeats 5] [--audio FILE] [--model NAME]
"""

from __future__ import annotations

import argparse
import statistics
import time

import whisperkit as wk


def raw_faster_whisper(whisper, path: str, mode: str, batch_size: int) -> str:
    from faster_whisper import BatchedInferencePipeline

    if mode == "batched":
        segments, _ = BatchedInferencePipeline(whisper).transcribe(path, batch_size=batch_size, beam_size=5)
    else:
        segments, _ = whisper.transcribe(path, beam_size=5)
    return " ".join(segment.text.strip() for segment in segments)


def with_whisperkit(model, path: str, mode: str, batch_size: int, progress: bool) -> str:
    return wk.transcribe(path, model=model, mode=mode, batch_size=batch_size, progress=progress).text


def timed(function, *args) -> tuple[float, str]:
    started = time.perf_counter()
    text = function(*args)
    return time.perf_counter() - started, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--audio", default=wk.sample_path())
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    model = wk.load_model(args.model)
    audio_seconds = wk.load_audio(args.audio).seconds
    print(f"{args.audio}: {audio_seconds:.1f} s, {model.name} on {model.device} ({model.compute_type}), "
          f"beam 5, {args.repeats} alternating repeats after one warm-up each")
    print(f"{'mode':<11}{'raw median s':>14}{'whisperkit s':>14}{'+progress s':>13}{'ratio':>8}{'ratio+bar':>11}")
    for mode in ("sequential", "batched"):
        raw_times, kit_times, bar_times = [], [], []
        raw_faster_whisper(model.whisper, args.audio, mode, args.batch_size)  # warm-up
        with_whisperkit(model, args.audio, mode, args.batch_size, False)
        for _ in range(args.repeats):
            seconds, raw_text = timed(raw_faster_whisper, model.whisper, args.audio, mode, args.batch_size)
            raw_times.append(seconds)
            seconds, kit_text = timed(with_whisperkit, model, args.audio, mode, args.batch_size, False)
            kit_times.append(seconds)
            seconds, _ = timed(with_whisperkit, model, args.audio, mode, args.batch_size, True)
            bar_times.append(seconds)
            if raw_text != kit_text:
                print("  note: texts differ between raw and whisperkit")
        raw, kit, bar = (statistics.median(t) for t in (raw_times, kit_times, bar_times))
        print(f"{mode:<11}{raw:>14.3f}{kit:>14.3f}{bar:>13.3f}{kit / raw:>8.3f}{bar / raw:>11.3f}")


if __name__ == "__main__":
    main()
