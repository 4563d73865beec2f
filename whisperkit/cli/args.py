"""Arguments shared by the commands that transcribe, and their conversion to a Config."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from whisperkit.core.config import Config


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and decoding options shared by every command that transcribes."""
    parser.add_argument("--model", default=None, help="size (tiny.en, small, large-v3, ...) or CTranslate2 folder; default: the bundled tiny.en")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--device-index", type=int, default=0,
                        help="which CUDA device runs the model, in CUDA's numbering (follows CUDA_VISIBLE_DEVICES; default: 0)")
    parser.add_argument("--compute-type", default="auto", help="auto, int8, int8_float16, float16, float32, ... (default: auto)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="CTranslate2 workers, 1-64, for that many concurrent calls; they share the weights, each adds a thread pool "
                             "and working memory (on a GPU a CUDA stream and allocator); one file uses one (default: 1; compare keeps the seed's 24 and 6)")
    parser.add_argument("--cpu-threads", type=int, default=0, help="CTranslate2 intra-op threads, 0 for its default, at most 4 x the CPUs")
    parser.add_argument("--beam-size", type=int, default=5, help="beam width, 1-16 (default: 5)")
    parser.add_argument("--language", default=None, help="language code such as en (English-only models: en only); default: detect")
    parser.add_argument("--channels", choices=("auto", "mix", "split"), default="auto",
                        help="a file of several channels (a call, an interview): split (each channel transcribed "
                             "as a speaker of its own), mix (to mono), or auto: split when the channels carry "
                             "different signals (default: auto)")
    parser.add_argument("--channel-names", type=channel_names_argument, default=None, metavar="NAME,NAME",
                        help="names of the channels in split transcripts (default: left,right for stereo, ch0,ch1,... otherwise)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summaries")


def channel_names_argument(text: str) -> tuple[str, ...]:
    """Comma-separated channel names (each checked by Config, with its own message)."""
    return tuple(name.strip() for name in text.split(","))


def batch_size_argument(text: str) -> int | str:
    """``auto`` or a whole number (range checked by Config, with its own message)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def model_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Config fields the shared model arguments set (``num_workers`` only where given)."""
    settings = dict(
        model=args.model,
        device=args.device,
        device_index=args.device_index,
        compute_type=args.compute_type,
        cpu_threads=args.cpu_threads,
        beam_size=args.beam_size,
        language=args.language,
        channels=args.channels,
        channel_names=args.channel_names,
    )
    if args.num_workers is not None:
        settings["num_workers"] = args.num_workers
    return settings


def config_from_args(args: argparse.Namespace, **changes: Any) -> Config:
    """A Config from the shared model arguments (one CTranslate2 worker unless given), with
    ``changes`` on top."""
    from whisperkit.core.config import Config

    return Config(**{"num_workers": 1, **model_settings(args), **changes})


def interval_argument(text: str) -> float:
    """Seconds between utilization samples: a number of at least the sampler's minimum."""
    import math

    from whisperkit.measure.sampler import MIN_INTERVAL_S

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds as a number, got {text!r}") from None
    if not math.isfinite(value) or value < MIN_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_INTERVAL_S} seconds, got {text!r}")
    return value
