"""The seed's before/after comparison, measured: speedup, accuracy, and raw faster-whisper beside it.

For each side (SEED_BEFORE: sequential, num_workers=24; SEED_AFTER: batched, batch size from
memory, num_workers=6) this times ``whisperkit.compare`` (monitored runs) and the same
configuration called on raw faster-whisper in the same process, alternating, several repeats,
and prints medians, the speedup and the word error rates. ``--matched`` also runs the
comparison with the sequential side decoding as the batched side does.

    .venv/bin/python benchmarks/compare.py [--repeats 5] [--audio FILE] [--matched]
"""

from __future__ import annotations

import argparse
import statistics
import time

import whisperkit as wk
from whisperkit.core.batching import recommend_for_model


def raw_side(config, path: str) -> float:
    """Wall seconds of raw faster-whisper for ``config``, its decoding options included."""
    from faster_whisper import BatchedInferencePipeline

    model = wk.load_model(config.model, config.device, config.compute_type, config.num_workers, config.cpu_threads)
    started = time.perf_counter()
    if config.mode == "batched":
        batch_size = recommend_for_model(model) if config.batch_size == "auto" else config.batch_size
        segments, _ = BatchedInferencePipeline(model.whisper).transcribe(
            path, batch_size=batch_size, beam_size=config.beam_size, **config.options)
    else:
        segments, _ = model.whisper.transcribe(path, beam_size=config.beam_size, **config.options)
    list(segments)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--audio", default=wk.sample_path())
    parser.add_argument("--matched", action="store_true")
    args = parser.parse_args()

    result = wk.compare(args.audio, repeats=args.repeats, matched=args.matched, progress=False)
    raw = {"before": [], "after": []}
    for _ in range(args.repeats):
        for side, config in (("before", result.before.config), ("after", result.after.config)):
            raw[side].append(raw_side(config, args.audio))
    print(f"{args.audio}: {result.before.transcript.audio_seconds:.1f} s, {args.repeats} alternating repeats, "
          f"matched decoding: {args.matched}")
    print(f"{'side':<8}{'whisperkit s':>14}{'raw s':>9}{'ratio':>8}{'RTFx':>7}{'CPU % proc':>12}{'WER ref':>9}")
    for side in ("before", "after"):
        runs = result.before_runs if side == "before" else result.after_runs
        kit = statistics.median(r.transcript.wall_seconds for r in runs)
        raw_median = statistics.median(raw[side])
        chosen = result.before if side == "before" else result.after
        wer = chosen.metrics["wer_vs_reference"]
        print(f"{side:<8}{kit:>14.3f}{raw_median:>9.3f}{kit / raw_median:>8.3f}{chosen.metrics['rtfx']:>7.1f}"
              f"{chosen.metrics['mean_process_cpu_percent']:>12.1f}{'' if wer is None else f'{wer:.3f}':>9}")
    raw_speedup = statistics.median(raw["before"]) / statistics.median(raw["after"])
    print(f"speedup: whisperkit {result.speedup:.2f}x, raw faster-whisper {raw_speedup:.2f}x; "
          f"WER between sides {result.wer_between:.3f}")


if __name__ == "__main__":
    main()
