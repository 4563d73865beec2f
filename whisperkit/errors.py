"""Errors whisperkit raises for bad input: one line each, naming the thing and what to do.

Every class derives from :class:`WhisperkitError`, so ``except wk.WhisperkitError`` catches
all of them; the command line turns them into ``whisperkit: error: <message>`` and exit status 2.
"""


class WhisperkitError(Exception):
    """Base class: every error caused by the user's input or environment."""


class AudioError(WhisperkitError):
    """An audio file is missing, is a directory, is not audio, or is damaged beyond decoding."""


class ModelError(WhisperkitError):
    """A model name is unknown, or a named model is neither local nor downloadable."""


class DeviceError(WhisperkitError):
    """A device or compute type was asked for that this machine cannot provide."""


class OutOfMemoryError(DeviceError):
    """The model does not fit in device memory even at batch size 1 (or sequentially)."""


class ConfigError(WhisperkitError):
    """A setting is out of range (batch size below 1, unknown mode, ...)."""


class ClusterError(WhisperkitError):
    """The Ray cluster has no room for a run, or a run on it stopped making progress (engine "ray")."""


class RunError(WhisperkitError):
    """A saved run folder is missing, damaged, or not a whisperkit run."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its class name when the message is empty)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def one_line(message: str) -> str:
    """``message`` on one line: characters that are not printable (a newline or a byte-order mark
    in a file name) shown as escapes, ``\\n``, ``\\ufeff``.

    >>> one_line("a\\nb.flac: not audio")
    'a\\\\nb.flac: not audio'
    """
    if message.isprintable():
        return message
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in message)
