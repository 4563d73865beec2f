"""Checks on what a refused command printed, shared by the tests of several layers."""

from __future__ import annotations

import subprocess


def one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The single stderr line of a refused command, checked for the words and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("whisperkit: error: "), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
