"""The ``whisperkit`` command: transcribe files, and describe this machine.

Every error caused by input (a missing file, an unknown model, CUDA where there is none)
prints one line, ``whisperkit: error: ...``, and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from whisperkit.errors import WhisperkitError
from whisperkit.files import write_text_atomic

OUTPUT_FORMATS = ("txt", "json", "srt", "vtt")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except WhisperkitError as error:
        _error(str(error))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def build_parser() -> argparse.ArgumentParser:
    from whisperkit import __version__

    parser = argparse.ArgumentParser(prog="whisperkit", description="See and measure how Whisper uses a GPU.")
    parser.add_argument("--version", action="version", version=f"whisperkit {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_transcribe(commands)
    env = commands.add_parser("env", help="CPUs, GPUs and driver, CUDA devices ctranslate2 sees, versions")
    env.add_argument("--json", action="store_true", help="print JSON instead of text")
    env.set_defaults(func=run_env)
    from whisperkit import experiment_cli, monitor_cli

    monitor_cli.register(commands)
    experiment_cli.register(commands)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and decoding options shared by every command that transcribes."""
    parser.add_argument("--model", default=None, help="size (tiny.en, small, large-v3, ...) or CTranslate2 folder; default: the bundled tiny.en")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--compute-type", default="auto", help="auto, int8, int8_float16, float16, float32, ... (default: auto)")
    parser.add_argument("--num-workers", type=int, default=None,
                        help="model replicas for concurrent calls (default: 1; compare keeps the seed's 24 and 6)")
    parser.add_argument("--cpu-threads", type=int, default=0, help="CTranslate2 intra-op threads, 0 for its default")
    parser.add_argument("--beam-size", type=int, default=5, help="beam width (default: 5)")
    parser.add_argument("--language", default=None, help="language code such as en; default: detect")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or summaries")


def _add_transcribe(commands) -> None:
    parser = commands.add_parser("transcribe", help="transcribe audio files")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio or video files")
    add_model_arguments(parser)
    parser.add_argument("--mode", choices=("batched", "sequential"), default="batched")
    parser.add_argument("--batch-size", type=batch_size_argument, default=8, help="chunks per batch, or auto (default: 8)")
    parser.add_argument("--output-dir", default=None, help="write DIR/<stem>.<format>; default: text to standard output")
    parser.add_argument("--output-format", choices=(*OUTPUT_FORMATS, "all"), default="txt")
    parser.set_defaults(func=run_transcribe)


def batch_size_argument(text: str):
    """``auto`` or a whole number (range checked by Config, with its own message)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or auto, got {text!r}") from None


def config_from_args(args, **changes):
    """A Config from the shared model arguments, with ``changes`` on top."""
    from whisperkit.config import Config

    values = dict(
        model=args.model,
        device=args.device,
        compute_type=args.compute_type,
        num_workers=1 if args.num_workers is None else args.num_workers,
        cpu_threads=args.cpu_threads,
        beam_size=args.beam_size,
        language=args.language,
    )
    values.update(changes)
    return Config(**values)


def run_transcribe(args) -> int:
    from whisperkit.models import load_model
    from whisperkit.transcription import transcribe_config

    config = config_from_args(args, mode=args.mode, batch_size=args.batch_size)
    model = load_model(config.model, config.device, config.compute_type, config.num_workers, config.cpu_threads)
    formats = OUTPUT_FORMATS if args.output_format == "all" else (args.output_format,)
    failed = 0
    for path in args.files:
        try:
            transcript = transcribe_config(path, config, model=model, progress=not args.quiet)
        except WhisperkitError as error:
            _error(str(error))
            failed += 1
            continue
        for warning in transcript.warnings:
            print(f"whisperkit: warning: {warning}", file=sys.stderr)
        if not args.quiet:
            print(_summary_line(path, transcript), file=sys.stderr)
        _write_outputs(transcript, path, formats, args.output_dir)
    if failed:
        _error(f"{failed} of {len(args.files)} file(s) failed")
        return 2
    return 0


def run_env(args) -> int:
    import json

    from whisperkit.environment import collect_environment, format_environment

    env = collect_environment()
    print(json.dumps(env, indent=2) if args.json else format_environment(env))
    return 0


def _write_outputs(transcript, path: str, formats, output_dir: str | None) -> None:
    renderers = {"txt": transcript.to_txt, "json": transcript.to_json, "srt": transcript.to_srt, "vtt": transcript.to_vtt}
    if output_dir is None:
        for name in formats:
            sys.stdout.write(renderers[name]())
            if name == "json":
                sys.stdout.write("\n")
        sys.stdout.flush()
        return
    stem = os.path.splitext(os.path.basename(path))[0]
    for name in formats:
        write_text_atomic(os.path.join(output_dir, f"{stem}.{name}"), renderers[name]())


def _summary_line(path: str, transcript) -> str:
    config = transcript.config
    how = f"batched, batch size {config['batch_size']}" if config["mode"] == "batched" else "sequential"
    retries = f", {len(transcript.batch_retries)} out-of-memory retries" if transcript.batch_retries else ""
    return (
        f"{os.path.basename(path)}: {transcript.audio_seconds:.1f} s of audio in {transcript.wall_seconds:.2f} s "
        f"({transcript.rtfx:.1f}x real time), {how}, {config['model']} on {config['device']} "
        f"({config['compute_type']}){retries}"
    )


def _error(message: str) -> None:
    print(f"whisperkit: error: {message}", file=sys.stderr)
