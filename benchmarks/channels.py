"""What transcribing channel by channel costs: ``channels="split"`` and ``"auto"`` against ``"mix"``.

A two-speaker call is made from the bundled clips: the odd clips on the left, the even ones on
the right, taking turns with 0.5 s between turns (about 50 s of stereo, each channel silent
while the other speaks). It is transcribed with each channel setting, alternating, ``--repeats``
times, in the modes asked (sequential, batched, corpus); medians of the wall seconds
(``Transcript.wall_seconds``: decoding the file included, model load excluded) and the ratio to
``mix`` in the same process. Also the cost of ``auto``'s test alone: decoding the channels
beside the mix and comparing their levels, against decoding the mix alone.

Split runs the model over each channel, so it costs about what two files of the call's length
cost (less where silence is cut by voice detection: batched and corpus modes drop the turns of
the other speaker); auto costs split's time on a call and mix's on a file whose channels match.

    .venv/bin/python benchmarks/channels.py [--repeats 3] [--modes sequential,batched,corpus] [--model tiny.en]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

import whisperkit as wk
from whisperkit.core.samples import short_clips

SETTINGS = ("mix", "split", "auto")


def make_call(folder: Path) -> str:
    """The two-speaker call (see the module's docstring) as a 16 kHz stereo WAV."""
    gap = np.zeros(8000, dtype=np.float32)
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for number, path in enumerate(short_clips()):
        speech = wk.load_audio(path).samples
        silence = np.zeros_like(speech)
        speaker, other = (left, right) if number % 2 == 0 else (right, left)
        speaker.extend([speech, gap])
        other.extend([silence, gap])
    rows = np.stack([np.concatenate(left), np.concatenate(right)])
    path = folder / "call.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((rows.T * 32767).astype("<i2").tobytes())
    return str(path)


def wall_seconds(path: str, model, mode: str, channels: str) -> float:
    if mode == "corpus":
        return wk.transcribe_corpus([path], model, channels=channels, progress=False).wall_seconds
    return wk.transcribe(path, model=model, mode=mode, channels=channels, progress=False).wall_seconds


def test_cost(path: str, repeats: int) -> tuple[float, float]:
    """Median seconds to decode the mix alone, and to decode the mix and the channels and run auto's test."""
    from whisperkit.core.channels import choose_for

    plain, tested = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        wk.load_audio(path)
        plain.append(time.perf_counter() - started)
        started = time.perf_counter()
        audio = wk.load_audio(path, keep_channels=True)
        choose_for("auto", audio.channels)
        tested.append(time.perf_counter() - started)
    return statistics.median(plain), statistics.median(tested)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="sequential,batched,corpus")
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    model = wk.load_model(args.model, device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        path = make_call(Path(folder))
        seconds = wk.load_audio(path).seconds
        print(f"a two-speaker call of {seconds:.1f} s, {model.name} on {model.device} ({model.compute_type}), "
              f"{args.repeats} alternating repeats, medians")
        for mode in args.modes.split(","):
            wall_seconds(path, model, mode, "mix")  # warm-up
            times: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
            for _ in range(args.repeats):
                for setting in SETTINGS:
                    times[setting].append(wall_seconds(path, model, mode, setting))
            base = statistics.median(times["mix"])
            cells = [f"{setting} {statistics.median(values):.2f} s ({statistics.median(values) / base:.2f}x, "
                     f"spread {min(values):.2f}-{max(values):.2f}{_noise(values, times['mix'])})"
                     for setting, values in times.items()]
            print(f"{mode:>10}: " + "; ".join(cells))
        plain, tested = test_cost(path, max(5, args.repeats))
        print(f"auto's test: decoding the mix {plain * 1000:.0f} ms, the mix and both channels plus the level "
              f"test {tested * 1000:.0f} ms ({(tested - plain) / seconds * 3600:.1f} s more per hour of stereo)")


def _noise(values: list[float], mix: list[float]) -> str:
    """``, no difference within noise`` where the spread overlaps mix's (and it is not mix itself)."""
    if values is mix or min(values) > max(mix) or max(values) < min(mix):
        return ""
    return ", no difference from mix within noise"


if __name__ == "__main__":
    main()
