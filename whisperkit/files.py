"""Writing files so that a crash never leaves half a file behind; lock files that keep two runs
out of one folder; standard output that went away."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import sys

from whisperkit.errors import WhisperkitError

NAME_MAX_BYTES = 255  # longest file name most file systems take (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, creating folders.

    UTF-8; a file name that is not UTF-8 inside the text (a surrogate escape, as Python reads such
    names) is written as ``\\udcXX``, which a JSON reader reads back as the same name.
    """
    write_bytes_atomic(path, text.encode("utf-8", errors="backslashreplace"))


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


def take_lock(lock: str | os.PathLike, what: str, error: type[WhisperkitError] = WhisperkitError) -> None:
    """Create the lock file ``lock`` (``"<pid> <host>"``), or raise ``error`` naming its holder.

    A lock whose process on this host is gone is stale and taken over. A lock held by this very
    process (another thread's run) is held like any other. ``what`` names the holder's kind in
    the message ("experiment", "corpus run").
    """
    lock = os.fspath(lock)
    folder = os.path.dirname(lock) or "."
    for _ in range(2):  # a second try after removing a stale lock
        try:
            descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = lock_holder(lock)
            if holder is not None:
                raise error(
                    f"{folder} is in use by another whisperkit {what} ({holder}); wait for it to "
                    f"end or choose another folder (if none is running, remove {lock})"
                ) from None
            with contextlib.suppress(OSError):
                os.remove(lock)
            continue
        except OSError as failure:
            raise error(f"cannot write in {folder}: {failure.strerror or failure}; choose another folder") from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{os.getpid()} {socket.gethostname()}\n")
        return
    raise error(f"cannot take {lock}; remove it if no whisperkit {what} is running")


def release_lock(lock: str | os.PathLike) -> None:
    """Remove a lock file taken by :func:`take_lock` (nothing if it is gone)."""
    with contextlib.suppress(OSError):
        os.remove(lock)


def lock_holder(lock: str | os.PathLike) -> str | None:
    """Who holds a lock file, or None when it is stale (its process on this host is gone)."""
    try:
        with open(lock, encoding="utf-8") as handle:
            pid_text, host = handle.read().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return "unknown process"  # being written right now, or unreadable: assume alive
    if host != socket.gethostname():
        return f"pid {pid} on {host}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"pid {pid}"


def stdout_to_devnull() -> None:
    """Point standard output at /dev/null (after a closed pipe or a full disk), so that later
    writes and the flush at exit cannot fail again: Python's documented recipe for EPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a real file
        pass
