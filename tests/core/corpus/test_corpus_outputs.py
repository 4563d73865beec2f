"""A corpus run's outputs (:mod:`whisperkit.core.corpus.outputs`): a user's file is never replaced,
output problems are refused before any work, and a failed write fails that file only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import whisperkit as wk
from whisperkit.core.corpus import outputs
from whisperkit.core.corpus.outputs import check_outputs
from whisperkit.core.corpus.sources import find_sources

try:
    from tests.expect import one_error_line
except ImportError:
    from expect import one_error_line


@pytest.fixture
def folder(tmp_path, clips):
    """``talks/`` with h01.flac and h02.flac (two bundled clips) and the user's own h02.txt."""
    talks = tmp_path / "talks"
    talks.mkdir()
    for number, clip in enumerate(clips[:2], start=1):
        shutil.copy(clip, talks / f"h0{number}.flac")
    (talks / "h02.txt").write_text("my own notes\n")
    return talks


def test_an_output_folder_that_is_the_input_folder_never_replaces_the_users_file(folder, cli):
    with pytest.raises(wk.ConfigError, match=r"holds .*h02.txt, which whisperkit did not write"):
        check_outputs(find_sources(folder), folder, ("txt",))
    result = cli("transcribe", str(folder), "--mode", "corpus", "--output-dir", str(folder), "--device", "cpu",
                 "--quiet", timeout=120)
    assert result.returncode == 2
    one_error_line(result, "h02.txt, which whisperkit did not write", "move them or choose another output folder")
    assert (folder / "h02.txt").read_text() == "my own notes\n"
    assert sorted(p.name for p in folder.iterdir()) == ["h01.flac", "h02.flac", "h02.txt"]  # no manifest, no lock
    check_outputs(find_sources(folder), folder, ("json",))  # its .json outputs replace nothing: allowed


def test_a_file_named_manifest_cannot_replace_the_manifest(tmp_path, clips):
    shutil.copy(clips[0], tmp_path / "manifest.flac")
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    shutil.copy(clips[1], tmp_path / "tree" / "sub" / "manifest.flac")
    with pytest.raises(wk.ConfigError, match="would replace the run's manifest; rename the file"):
        check_outputs(find_sources(tmp_path / "manifest.flac"), tmp_path / "out", ("json",))
    check_outputs(find_sources(tmp_path / "manifest.flac"), tmp_path / "out", ("txt",))  # manifest.txt: no clash
    check_outputs(find_sources(tmp_path / "tree"), tmp_path / "out", ("json",))  # sub/manifest.json: no clash either


def test_a_name_over_the_limit_and_a_folder_in_the_way_are_refused_before_any_work(tmp_path, clips):
    long_name = "x" * 251 + ".wav"  # 255 bytes, valid; its .json would be 256
    shutil.copy(clips[0], tmp_path / long_name)
    with pytest.raises(wk.ConfigError, match="is 256 bytes, over the 255-byte limit of file names; rename"):
        check_outputs(find_sources(tmp_path / long_name), tmp_path / "out", ("json",))
    check_outputs(find_sources(tmp_path / long_name), tmp_path / "out", ("txt",))  # 255 bytes: fine
    (tmp_path / "out" / "aesop_01.txt").mkdir(parents=True)
    with pytest.raises(wk.ConfigError, match=r"aesop_01.txt is blocked by a folder of that name"):
        check_outputs(find_sources(clips[:3]), tmp_path / "out", ("txt",))


def test_an_output_folder_that_is_a_file_is_refused_before_the_model_loads(tmp_path, clips, monkeypatch):
    from whisperkit.core import models

    (tmp_path / "out").write_text("a file")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(models, "load_model", no_loading)  # the engines import it when they start
    with pytest.raises(wk.ConfigError, match="output folder .*out is a file, not a folder"):
        wk.transcribe_corpus(clips[:1], output_dir=tmp_path / "out", progress=False)


def unprivileged(code: str, *paths: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python subprocess as an unprivileged user: as ``nobody`` when this is
    root (whisperkit imported first, then ``os.setuid``), else as this user."""
    if os.geteuid() != 0:
        prefix = ""
    else:
        prefix = "import os, whisperkit.core.corpus.outputs\nos.setgid(65534); os.setuid(65534)\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", prefix + textwrap.dedent(code), *paths], capture_output=True,
                          text=True, timeout=120, env=env)


def test_a_read_only_output_folder_is_refused_before_any_work(shared_tmp, clips):
    out = os.path.join(shared_tmp, "out")
    os.mkdir(out, 0o555)
    os.chmod(out, 0o555)
    clip = os.path.join(shared_tmp, "a.flac")
    shutil.copy(clips[0], clip)
    os.chmod(clip, 0o644)
    result = unprivileged("""
        import sys
        import whisperkit as wk
        from whisperkit.core.corpus.outputs import check_outputs
        from whisperkit.core.corpus.sources import find_sources
        try:
            check_outputs(find_sources(sys.argv[1]), sys.argv[2] + "/new", ("txt",))
        except wk.ConfigError as error:
            sys.exit(f"refused: {error}")
    """, clip, out)
    assert f"refused: cannot write in {out} (Permission denied)" in result.stderr, result.stderr
    assert "choose a folder you can write to" in result.stderr
    assert os.listdir(out) == []


def test_a_write_that_fails_during_the_run_fails_that_file_only(tmp_path, clips, model, monkeypatch):
    real = outputs.write_outputs

    def disk_full_for_the_second(output_dir, source, transcript, formats):
        if source.name == "aesop_02":
            raise wk.WhisperkitError(f"cannot write {output_dir}/aesop_02.txt: No space left on device; free some space")
        return real(output_dir, source, transcript, formats)

    monkeypatch.setattr(outputs, "write_outputs", disk_full_for_the_second)
    out = tmp_path / "out"
    result = wk.transcribe_corpus(clips[:3], model, output_dir=out, progress=False)
    assert list(result.failures) == [clips[1]] and "No space left on device" in result.failures[clips[1]]
    assert "steady" in result.transcripts[clips[1]].text  # transcribed all the same: kept in the result
    assert sorted(p.name for p in out.glob("*.txt")) == ["aesop_01.txt", "aesop_03.txt"]
    entries = json.loads((out / "manifest.json").read_text())["files"]
    assert {name: entry["status"] for name, entry in entries.items()} == {
        "aesop_01": "done", "aesop_02": "failed", "aesop_03": "done"}
    monkeypatch.setattr(outputs, "write_outputs", real)
    again = wk.transcribe_corpus(clips[:3], model, output_dir=out, progress=False)
    assert list(again.transcripts) == [clips[1]] and len(again.skipped) == 2 and not again.failures
