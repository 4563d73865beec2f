"""The ``whisperkit`` command: transcribe files, and describe this machine.

Every error caused by input (a missing file, an unknown model, CUDA where there is none)
prints one line, ``whisperkit: error: ...``, and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from whisperkit.cli.args import add_model_arguments, batch_size_argument, config_from_args
from whisperkit.errors import ConfigError, WhisperkitError
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
    from whisperkit._version import __version__

    parser = argparse.ArgumentParser(prog="whisperkit", description="See and measure how Whisper uses a GPU.")
    parser.add_argument("--version", action="version", version=f"whisperkit {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_transcribe(commands)
    env = commands.add_parser("env", help="CPUs, GPUs and driver, CUDA devices ctranslate2 sees, versions")
    env.add_argument("--json", action="store_true", help="print JSON instead of text")
    env.set_defaults(func=run_env)
    from whisperkit.cli import experiments as experiment_cli
    from whisperkit.cli import monitor as monitor_cli

    monitor_cli.register(commands)
    experiment_cli.register(commands)
    return parser


def _add_transcribe(commands) -> None:
    parser = commands.add_parser("transcribe", help="transcribe audio files")
    parser.add_argument("files", nargs="+", metavar="PATH",
                        help="audio or video files; with --mode corpus also folders (searched recursively) "
                             "and @list.txt files (one path per line)")
    add_model_arguments(parser)
    parser.add_argument("--mode", choices=("batched", "sequential", "corpus"), default="batched",
                        help="corpus: all files through one pipeline, batched across files (needs --output-dir)")
    parser.add_argument("--batch-size", type=batch_size_argument, default=8, help="chunks per batch, or auto (default: 8)")
    parser.add_argument("--output-dir", default=None, help="write DIR/<stem>.<format>; default: text to standard output")
    parser.add_argument("--output-format", choices=(*OUTPUT_FORMATS, "all"), default="txt")
    parser.add_argument("--no-pack", dest="pack", action="store_false",
                        help="corpus mode: one clip per window instead of packing short clips together")
    parser.add_argument("--overwrite", action="store_true",
                        help="corpus mode: redo files the output folder's manifest lists as done")
    parser.add_argument("--workers", type=int, default=None, help="corpus mode: threads reading files")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="corpus mode: run the pipeline here (local) or on a Ray cluster (ray; pip install whisperkit[ray])")
    parser.add_argument("--ray-address", default=None,
                        help="engine ray: the cluster to join (HOST:6379 or ray://HOST:10001); default: start a local Ray")
    parser.add_argument("--model-workers", type=int, default=None,
                        help="engine ray: model actors (default: one per GPU, or one per CPU on a CPU-only cluster)")
    parser.set_defaults(func=run_transcribe)


def run_transcribe(args: argparse.Namespace) -> int:
    if args.mode == "corpus":
        from whisperkit.cli.corpus import run_corpus

        return run_corpus(args)
    if args.engine != "local" or args.ray_address is not None or args.model_workers is not None:
        raise ConfigError("--engine, --ray-address and --model-workers go with --mode corpus")
    from whisperkit.core.models import load_model
    from whisperkit.core.transcription import transcribe_config

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


def run_env(args: argparse.Namespace) -> int:
    import json

    from whisperkit.measure.environment import collect_environment, format_environment

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
