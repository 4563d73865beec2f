"""Which files a corpus run finds (:mod:`whisperkit.core.corpus.sources`): through links, never
skipping a folder without a word, and ``@list`` files in the encodings editors save."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import whisperkit as wk
from whisperkit.core.corpus.sources import find_sources


def names(found) -> list[str]:
    return [source.name for source in found]


def test_a_linked_subfolder_is_searched_and_a_link_loop_once(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.flac").write_bytes(b"x")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.flac").write_bytes(b"x")
    (corpus / "linked").symlink_to(tmp_path / "elsewhere")
    (corpus / "loop").symlink_to(corpus)  # a link back up: searched once, not forever
    assert names(find_sources(corpus)) == ["a", "linked/b"]


def find_unprivileged(path: str) -> str:
    """``find_sources(path)`` as an unprivileged user (``nobody`` when this is root): what it
    found, or ``error: <message>``."""
    drop = "os.setgid(65534); os.setuid(65534)\n" if os.geteuid() == 0 else ""
    code = "import os, sys\nimport whisperkit as wk\nfrom whisperkit.core.corpus.sources import find_sources\n" + drop + \
        textwrap.dedent("""
        try:
            print(" ".join(s.name for s in find_sources(sys.argv[1])))
        except wk.ConfigError as error:
            print(f"error: {error}")
        """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_an_unreadable_subfolder_or_folder_is_refused_naming_it(shared_tmp):
    corpus = os.path.join(shared_tmp, "corpus")
    os.makedirs(os.path.join(corpus, "locked"))
    for name in ("a.flac", "locked/b.flac"):
        with open(os.path.join(corpus, name), "wb") as handle:
            handle.write(b"x")
    os.chmod(corpus, 0o755)
    assert find_unprivileged(corpus) == "a locked/b"
    os.chmod(os.path.join(corpus, "locked"), 0o000)
    locked = os.path.join(corpus, "locked")
    assert find_unprivileged(corpus) == (
        f"error: {locked}: cannot read a folder in it (Permission denied); its files would be skipped: fix its "
        "permissions, or name the files and folders to transcribe")
    assert find_unprivileged(locked).startswith(f"error: {locked}: cannot read this folder (Permission denied)")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be"])
def test_a_list_with_a_byte_order_mark_is_read(tmp_path, encoding):
    (tmp_path / "café.flac").write_bytes(b"x")
    (tmp_path / "b.flac").write_bytes(b"x")
    text = "# clips\r\ncafé.flac\r\nb.flac\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    (tmp_path / "list.txt").write_bytes(data)
    assert names(find_sources(f"@{tmp_path / 'list.txt'}")) == ["café", "b"]


def test_a_latin1_list_names_the_files_it_means(tmp_path):
    (tmp_path / "café.flac").write_bytes(b"x")  # UTF-8 name on disk, the list written in Latin-1
    on_disk = os.fsdecode(b"na\xefve.flac")  # a Latin-1 name on disk, as the list holds it
    (tmp_path / on_disk).write_bytes(b"x")
    (tmp_path / "list.txt").write_bytes("café.flac\nnaïve.flac\n".encode("latin-1"))
    found = find_sources(f"@{tmp_path / 'list.txt'}")
    assert [os.path.basename(s.path) for s in found] == ["café.flac", on_disk]
    assert all(os.path.exists(s.path) for s in found)


def test_a_binary_file_given_as_a_list_is_refused(tmp_path, clips):
    with pytest.raises(wk.ConfigError, match="not a text list .*save it as UTF-8 text"):
        find_sources(f"@{clips[0]}")


def test_a_newline_in_a_file_name_keeps_its_error_on_one_line(tmp_path, cli):
    bad = tmp_path / "two\nlines.flac"
    bad.write_bytes(b"not audio at all" * 2000)
    result = cli("transcribe", str(bad), "--device", "cpu", "--quiet", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"whisperkit: error: {tmp_path}/two\\nlines.flac: "), lines
    assert lines[1] == "whisperkit: error: 1 of 1 file(s) failed"
