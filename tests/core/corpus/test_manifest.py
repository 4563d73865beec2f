"""The corpus manifest (:mod:`whisperkit.core.corpus.manifest`): the truth about what a run wrote,
after SIGTERM, a stop at any moment, concurrent runs, replaced inputs, hand edits and odd names."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import whisperkit as wk
from whisperkit.core.corpus.manifest import JOURNAL, LOCK, Manifest
from whisperkit.core.corpus.stages import Source

CONFIG = {"model": "tiny.en", "formats": ["txt"]}


def source(tmp_path, name: str) -> Source:
    path = tmp_path / f"{name}.flac"
    path.write_bytes(name.encode())
    return Source(0, str(path), name)


def test_each_record_is_in_the_journal_at_once_and_a_cut_line_is_left_out(tmp_path):
    out = str(tmp_path / "out")
    manifest = Manifest.open(out, CONFIG)
    one, two = source(tmp_path, "one"), source(tmp_path, "two")
    manifest.record(one, "done", audio_seconds=1.0)
    manifest.record(two, "writing")
    with open(os.path.join(out, JOURNAL), "ab") as journal:  # a stop in the middle of the next line
        journal.write(b'{"name": "two", "path": "/x", "sta')
    read = Manifest.read(out)  # as a rerun reads it, without the save this run never made
    assert read.files["one"]["status"] == "done" and read.files["two"]["status"] == "writing"
    assert read.owns("two")  # its outputs are whisperkit's: a rerun may replace them
    manifest.close()
    assert sorted(os.listdir(out)) == ["manifest.json"]  # journal emptied into it, lock released
    saved = json.loads(open(os.path.join(out, "manifest.json")).read())
    assert saved["files"]["one"]["audio_seconds"] == 1.0 and saved["config"] == CONFIG


@pytest.mark.parametrize("content, words", [
    (b'{"config": {"model": "tiny.en"}, "files": {"a": {"pa', "damaged, not valid JSON"),
    (bytes(range(256)), "damaged, not UTF-8 text"),
    (b'{"config": {}, "files": null}', "damaged, its files is null, not an object"),
    (b'{"config": null, "files": {}}', "damaged, its config is null, not an object"),
    (b'{"config": {}, "files": {"a": "done"}}', "damaged, its entry for 'a' is a str, not an object"),
    (b'{"config": {}, "files": {"a": {"path": "/a", "status": "finished"}}}', "has status 'finished'"),
    (b'[1, 2]', "it is a JSON list"),
])
def test_a_damaged_or_hand_edited_manifest_is_refused_in_one_line_and_kept(tmp_path, content, words):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_bytes(content)
    with pytest.raises(wk.ConfigError) as caught:
        Manifest.open(str(out), CONFIG)
    message = str(caught.value)
    assert words in message and "\n" not in message and "restore or fix it" in message
    assert (out / "manifest.json").read_bytes() == content  # never silently replaced
    assert not (out / LOCK).exists()  # the folder is released again


def test_a_damaged_manifest_stops_the_command_before_any_work(tmp_path, clips, cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_bytes(b"\x89PNG\xff\xfe binary")
    result = cli("transcribe", clips[0], "--mode", "corpus", "--output-dir", str(out), "--device", "cpu", "--quiet",
                 timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"whisperkit: error: {out / 'manifest.json'}: damaged, not UTF-8 text; it records which files in this "
        "folder whisperkit wrote: restore or fix it, or remove it together with those outputs, or choose another "
        "output folder"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_folder_in_use_by_another_run_is_refused_and_a_stale_lock_is_taken_over(tmp_path, clips, model):
    out = tmp_path / "out"
    holder = Manifest.open(str(out), CONFIG)  # another run (a thread of this process) holds the folder
    with pytest.raises(wk.ConfigError, match=rf"in use by another whisperkit corpus run \(pid {os.getpid()}\)"):
        wk.transcribe_corpus(clips[:1], model, output_dir=out, progress=False)
    holder.close(save=False)
    (out / "manifest.json").unlink()  # the holder's settings are not the model's
    (out / LOCK).write_text(f"999999999 {socket.gethostname()}")  # left by a run killed with SIGKILL
    result = wk.transcribe_corpus(clips[:1], model, output_dir=out, progress=False)
    assert list(result.transcripts) == clips[:1] and not (out / LOCK).exists()


def test_a_second_command_into_a_folder_in_use_is_refused_in_one_line(tmp_path, clips, cli):
    out = tmp_path / "out"
    holder = Manifest.open(str(out), CONFIG)  # the first run, still going
    try:
        result = cli("transcribe", clips[0], "--mode", "corpus", "--output-dir", str(out), "--device", "cpu",
                     "--quiet", timeout=120)
    finally:
        holder.close()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"whisperkit: error: {out} is in use by another whisperkit corpus run (pid {os.getpid()}); wait for it to "
        f"end or choose another folder (if none is running, remove {out / LOCK})"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_two_threads_into_one_folder_never_mix(tmp_path, clips, model):
    out = tmp_path / "out"
    outcomes: list[object] = []

    def run(files):
        try:
            outcomes.append(wk.transcribe_corpus(files, model, output_dir=out, pack=False, progress=False))
        except wk.ConfigError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=run, args=(clips[:6],)), threading.Thread(target=run, args=(clips[4:],))]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes if isinstance(o, wk.ConfigError)]
    assert all("in use by another whisperkit corpus run" in str(error) for error in refused)
    entries = json.loads((out / "manifest.json").read_text())["files"]
    written = sorted(p.stem for p in out.glob("*.txt"))
    assert written == sorted(name for name, entry in entries.items() if entry["status"] == "done")  # the truth


def test_an_input_replaced_by_another_file_is_done_again(tmp_path, clips, model):
    talk = tmp_path / "in" / "talk.flac"
    talk.parent.mkdir()
    shutil.copy(clips[1], talk)  # "Slow and steady wins the race."
    out = tmp_path / "out"
    first = wk.transcribe_corpus(talk, model, output_dir=out, progress=False)
    assert "steady" in first.transcripts[str(talk)].text
    shutil.copy(clips[0], talk)  # another recording under the same name
    second = wk.transcribe_corpus(talk, model, output_dir=out, progress=False)
    assert second.skipped == [] and "tortoise" in second.transcripts[str(talk)].text
    assert "tortoise" in (out / "talk.txt").read_text()
    os.utime(talk, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same size: done again (not trusted)
    assert wk.transcribe_corpus(talk, model, output_dir=out, progress=False).skipped == []
    assert wk.transcribe_corpus(talk, model, output_dir=out, progress=False).skipped == [str(talk)]


def test_a_file_name_that_is_not_utf8_is_written_and_resumed(tmp_path, clips, model):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes on a UTF-8 system: a surrogate escape in Python
    shutil.copy(clips[1], os.path.join(folder, name + ".flac"))
    out = tmp_path / "out"
    first = wk.transcribe_corpus(folder, model, output_dir=out, output_format="json", progress=False)
    assert not first.failures
    document = json.loads((out / "manifest.json").read_text(encoding="utf-8"))  # valid UTF-8 JSON
    assert list(document["files"]) == [name]
    assert json.loads(open(os.path.join(out, name + ".json"), encoding="utf-8").read())["audio_path"].endswith(
        name + ".flac")
    again = wk.transcribe_corpus(folder, model, output_dir=out, output_format="json", progress=False)
    assert len(again.skipped) == 1 and not again.transcripts


def test_sigterm_leaves_the_manifest_the_truth_about_the_outputs(tmp_path, clips):
    folder = tmp_path / "in"
    folder.mkdir()
    for copy in range(4):
        for clip in clips:
            shutil.copy(clip, folder / f"{copy}_{os.path.basename(clip)}")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "whisperkit", "transcribe", str(folder), "--mode", "corpus", "--output-dir", str(out),
         "--no-pack", "--batch-size", "1", "--device", "cpu", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(list(out.glob("*.txt"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == [
        "whisperkit: error: terminated (SIGTERM); the files finished so far are written and in the manifest"]
    entries = json.loads((out / "manifest.json").read_text())["files"]
    written = sorted(p.stem for p in out.glob("*.txt"))
    assert 3 <= len(written) < 4 * len(clips)
    assert written == sorted(name for name, entry in entries.items() if entry["status"] == "done")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no journal, lock or temporary
