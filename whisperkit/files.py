"""Writing files so that a crash never leaves half a file behind; standard output that went away."""

from __future__ import annotations

import errno
import os
import secrets
import sys

from whisperkit.errors import WhisperkitError

NAME_MAX_BYTES = 255  # longest file name most file systems take (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, creating folders."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, creating folders.

    On any failure (a read-only folder, a full disk) nothing is left behind: not the temporary
    file, and not an empty or partial ``path``; a :class:`WhisperkitError` names the file.
    """
    path = os.fspath(path)
    temporary = temporary_name(path)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError as error:
        if os.path.lexists(temporary):
            os.remove(temporary)
        raise WhisperkitError(f"cannot write {path}: {error.strerror or error}; {_advice(error)}") from None


def temporary_name(path: str) -> str:
    """A hidden, unique name beside ``path`` whose file name stays within 255 bytes.

    ``.<name>.<random>.tmp``, with ``<name>`` shortened (at a character boundary) when the
    whole would be too long, so a long but valid output name still gets a valid temporary one.
    """
    folder, name = os.path.split(path)
    suffix = f".{os.getpid()}-{secrets.token_hex(4)}.tmp"
    room = NAME_MAX_BYTES - len(suffix.encode()) - 1
    encoded = os.fsencode(name)
    if len(encoded) > room:
        name = encoded[:room].decode("utf-8", errors="ignore") if isinstance(name, str) else name
    return os.path.join(folder, f".{name}{suffix}")


def _advice(error: OSError) -> str:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free some space or choose another folder"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "choose a folder you can write to"
    if error.errno == errno.ENAMETOOLONG:
        return "choose a shorter name"
    return "check the folder"


def stdout_to_devnull() -> None:
    """Point standard output at /dev/null (after a closed pipe or a full disk), so that later
    writes and the flush at exit cannot fail again: Python's documented recipe for EPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a real file
        pass
