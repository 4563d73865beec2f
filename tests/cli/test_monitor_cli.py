"""The monitor command (:mod:`whisperkit.cli.monitor`) end to end: ``whisperkit monitor -- COMMAND``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

try:
    from tests import machine
except ImportError:
    import machine

ROOT = Path(__file__).resolve().parents[2]
CPU_COLUMNS, HAS_REAL_NVML = machine.CPU_COLUMNS, machine.HAS_REAL_NVML

HARNESS = """
import argparse, sys
from whisperkit.cli import monitor as monitor_cli
from whisperkit.errors import WhisperkitError
parser = argparse.ArgumentParser(prog="whisperkit")
monitor_cli.register(parser.add_subparsers(required=True))
args = parser.parse_args()
try:
    sys.exit(args.func(args))
except WhisperkitError as error:
    print(f"whisperkit: error: {error}", file=sys.stderr)
    sys.exit(2)
"""


def whisperkit_command() -> list[str]:
    """``python -m whisperkit``; until whisperkit/cli.py exists, a stand-in with the same contract."""
    if (ROOT / "whisperkit" / "cli.py").exists():
        return [sys.executable, "-m", "whisperkit"]
    return [sys.executable, "-c", HARNESS]


def run_monitor(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([*whisperkit_command(), "monitor", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=30)


def test_monitor_command_writes_csv_and_exits_with_the_command(tmp_path):
    out = run_monitor("--interval", "0.1", "--output", "run.csv", "--",
                      sys.executable, "-c", "import time; time.sleep(1)", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    timeline = pd.read_csv(tmp_path / "run.csv")
    assert list(timeline.columns)[:len(CPU_COLUMNS)] == CPU_COLUMNS
    assert ("gpu0_util_percent" in timeline) == machine.has_nvml_gpu()
    assert 8 <= len(timeline) <= 16, len(timeline)
    assert timeline["process_rss_mb"].iloc[0] > 1  # the child's tree, not this test process
    lines = out.stdout.splitlines()
    assert lines[0].startswith("GPU: NVML unavailable") or machine.has_nvml_gpu() or HAS_REAL_NVML
    header = next(i for i, line in enumerate(lines) if line.startswith("#"))
    assert "cpu%" in lines[header] and "proc_cpu%" in lines[header]
    assert len(lines) - header - 1 == len(timeline)  # one live line per sample
    assert "Traceback" not in out.stderr


def test_monitor_command_passes_on_the_exit_status_and_writes_parquet(tmp_path):
    out = run_monitor("--interval", "0.1", "-o", "run.parquet", "--",
                      sys.executable, "-c", "raise SystemExit(3)", cwd=tmp_path)
    assert out.returncode == 3, out.stderr
    assert list(pd.read_parquet(tmp_path / "run.parquet").columns)[:len(CPU_COLUMNS)] == CPU_COLUMNS


def test_monitor_command_that_cannot_start(tmp_path):
    out = run_monitor("--", "no-such-command-whisperkit", cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "no-such-command-whisperkit" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_monitor_unknown_output_suffix_fails_before_starting(tmp_path):
    out = run_monitor("-o", "run.txt", "--", sys.executable, "-c", "open('started', 'w')", cwd=tmp_path)
    assert out.returncode == 2 and ".csv or .parquet" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "started").exists()
