"""Where batching helps on this device: the encoder and the decoder, each batched and one window at a time.

Eight 30 s windows (the bundled clips, padded as Whisper pads them) go through CTranslate2's
Whisper model two ways, alternating, ``--repeats`` times, medians:

- one at a time: ``encode`` then ``generate`` (beam 5, no timestamps) for each window alone;
- batched: one ``encode`` and one ``generate`` for all eight.

It prints each part's seconds per window and the batched speed-up of each, and the share of
the one-at-a-time time the encoder takes. On a CPU the encoder gains little from a batch, so
batching across files without packing can only speed up the decoder's share. On a GPU both are
expected to gain (a hypothesis, not yet measured by this project: this script run with
``--device cuda`` confirms it if both batched speed-ups are above 1, and refutes it for the
encoder if its speed-up stays at or below 1).

    .venv/bin/python benchmarks/batching_split.py [--repeats 5] [--batch-size 8] [--model tiny.en] [--device auto]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import whisperkit as wk
from whisperkit.core.samples import short_clips


def windows(model, count: int) -> np.ndarray:
    """``count`` padded log-mel windows of the bundled clips (repeated when there are fewer)."""
    from faster_whisper.audio import pad_or_trim

    extractor = model.whisper.feature_extractor
    clips = short_clips()
    return np.stack([pad_or_trim(extractor(wk.load_audio(clips[i % len(clips)]).samples)) for i in range(count)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    model = wk.load_model(args.model, device=args.device)
    whisper = model.whisper
    tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe", language="en")
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    features = windows(model, args.batch_size)

    def encode(batch):
        return whisper.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(batch)), to_cpu=False)

    def generate(encoded, size):
        return whisper.model.generate(encoded, [prompt] * size, beam_size=5, max_length=224)

    def alone():
        encode_s = generate_s = 0.0
        for i in range(len(features)):
            started = time.perf_counter()
            encoded = encode(features[i:i + 1])
            middle = time.perf_counter()
            generate(encoded, 1)
            encode_s += middle - started
            generate_s += time.perf_counter() - middle
        return encode_s, generate_s

    def batched():
        started = time.perf_counter()
        encoded = encode(features)
        middle = time.perf_counter()
        generate(encoded, len(features))
        return middle - started, time.perf_counter() - middle

    alone(), batched()  # warm up
    times: dict[str, list[tuple[float, float]]] = {"one at a time": [], "batched": []}
    for _ in range(args.repeats):
        times["one at a time"].append(alone())
        times["batched"].append(batched())
    count = len(features)
    medians = {name: (statistics.median(e for e, _ in runs), statistics.median(g for _, g in runs))
               for name, runs in times.items()}
    print(f"{model.name} on {model.device} ({model.compute_type}); {count} windows of 30 s, beam 5, "
          f"{args.repeats} alternating repeats (medians)")
    for name, (encode_s, generate_s) in medians.items():
        print(f"  {name:<14} encode {encode_s / count:.3f} s/window  decode {generate_s / count:.3f} s/window  "
              f"total {(encode_s + generate_s) / count:.3f} s/window")
    (e1, g1), (eb, gb) = medians["one at a time"], medians["batched"]
    print(f"  batched speed-up: encoder {e1 / eb:.2f}x, decoder {g1 / gb:.2f}x, both {(e1 + g1) / (eb + gb):.2f}x; "
          f"the encoder is {100 * e1 / (e1 + g1):.0f} % of the one-at-a-time time")


if __name__ == "__main__":
    main()
