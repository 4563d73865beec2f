"""The settings of one transcription run, checked once, in one place."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from whisperkit.checks import check_number, check_whole
from whisperkit.core.channels import DEFAULT_CHANNELS, check_channels
from whisperkit.errors import ConfigError

MODES = ("batched", "sequential", "corpus")
SEGMENTATIONS = ("own", "batched")

# Valid ranges, checked in Config (so by the Python API, the command line and the app alike).
# Each limit keeps a setting from exhausting the machine; none is near a useful value.
MAX_BATCH_SIZE = 256  # chunks decoded at once; memory grows with it (batching.py estimates how much)
MAX_BEAM_SIZE = 16  # beam width; decoder memory and time grow with it (5 is Whisper's own choice)
MAX_BEST_OF = 16  # candidates sampled when temperature > 0; memory grows like the beam's
MAX_NUM_WORKERS = 64  # CTranslate2 workers; they share the weights, each that runs a call adds a thread team and working memory
THREADS_PER_CORE = 4  # cpu_threads at most this many times os.cpu_count()
MAX_TEMPERATURE = 2.0  # sampling temperature (Whisper's fallback goes up to 1.0)
MAX_PATIENCE = 10.0  # beam search keeps beam_size x patience candidates


def max_cpu_threads() -> int:
    """The most CTranslate2 threads per worker accepted here: 4 x the logical CPUs."""
    return THREADS_PER_CORE * (os.cpu_count() or 1)


@dataclass(frozen=True)
class Config:
    """How to transcribe: the model, where it runs, and how it decodes.

    ``mode="batched"`` is ``BatchedInferencePipeline(model).transcribe(batch_size=...)``;
    ``mode="sequential"`` is ``WhisperModel.transcribe`` (``batch_size`` is then unused);
    ``mode="corpus"`` is :func:`whisperkit.transcribe_corpus` over files and folders, windows
    batched across files (``pack`` puts several short clips in one window), run by
    :func:`whisperkit.run` and :func:`whisperkit.sweep`.
    ``batch_size="auto"`` asks :func:`whisperkit.recommend_batch_size` for one.
    ``device_index`` is the CUDA device that runs the model (CUDA's numbering, which follows
    ``CUDA_VISIBLE_DEVICES``). ``num_workers`` are CTranslate2 workers (``inter_threads``): they share the
    model's weights; each is a thread with its own intra-op thread team and working memory, made
    when it first runs a call (on a GPU also its own CUDA stream; the CUDA allocator is one per
    process, CTranslate2's default ``cuda_malloc_async``). Each model call goes to the first free
    worker, so one transcription's calls spread over the workers and more of them cost memory,
    not time (``python benchmarks/workers.py``). ``cpu_threads`` 0 is CTranslate2's default:
    min(4, logical CPUs), or ``OMP_NUM_THREADS`` where set.
    ``options`` are further keyword arguments for faster-whisper's ``transcribe``
    (``vad_filter``, ``without_timestamps``, ``temperature``, ...).
    ``segmentation="batched"`` makes a sequential run decode the chunks the batched pipeline
    cuts (its VAD settings, ``chunk_length`` and ``clip_timestamps`` read from ``options``; see
    :mod:`whisperkit.core.chunking`); ``"own"`` leaves each pipeline its own segmentation.
    ``channels`` says what to do with a file of several channels: ``"mix"`` them to mono,
    ``"split"`` (each transcribed on its own, its segments named by ``channel_names``, default
    ``left``/``right`` for stereo, ``ch0`` .. ``chN`` otherwise), or ``"auto"``: split when the
    channels carry different signals (see :mod:`whisperkit.core.channels`).

    Valid ranges (a :class:`ConfigError` names the setting otherwise): ``batch_size`` 1 to 256
    or ``"auto"``; ``beam_size`` 1 to 16; ``num_workers`` 1 to 64; ``cpu_threads`` 0 (CTranslate2's
    default) to 4 x the logical CPUs; ``language`` a code Whisper knows (``en``, ``de``, ...) or
    None; in ``options``, ``temperature`` 0 to 2 (or a list of such), ``best_of`` 1 to 16,
    ``patience`` above 0 up to 10, switches such as ``vad_filter`` True or False.

    >>> Config(mode="sequential", num_workers=24).mode
    'sequential'
    """

    model: str | None = None
    device: str = "auto"
    device_index: int = 0
    compute_type: str = "auto"
    mode: str = "batched"
    batch_size: int | str = 8
    num_workers: int = 1
    cpu_threads: int = 0
    beam_size: int = 5
    language: str | None = None
    options: dict = field(default_factory=dict)
    label: str = ""
    segmentation: str = "own"
    pack: bool = True  # mode "corpus" only: several short clips per 30 s window
    channels: str = DEFAULT_CHANNELS
    channel_names: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; expected one of: {', '.join(MODES)}")
        if self.batch_size != "auto":
            check_whole(self.batch_size, "batch_size", 1, MAX_BATCH_SIZE, why="or 'auto'")
        check_whole(self.beam_size, "beam_size", 1, MAX_BEAM_SIZE)
        check_whole(self.device_index, "device_index", 0)
        check_whole(self.num_workers, "num_workers", 1, MAX_NUM_WORKERS)
        check_whole(self.cpu_threads, "cpu_threads", 0, max_cpu_threads(),
                    why=f"0 for CTranslate2's default; at most {THREADS_PER_CORE} x the {os.cpu_count()} CPUs")
        for name in ("model", "label"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, got {type(value).__name__}")
        for name in ("device", "compute_type"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        check_language(self.language)
        if not isinstance(self.options, dict):
            raise ConfigError(f"options must be a dict of faster-whisper keywords, got {type(self.options).__name__}")
        if self.segmentation not in SEGMENTATIONS:
            raise ConfigError(
                f"unknown segmentation {self.segmentation!r}; expected one of: {', '.join(SEGMENTATIONS)}"
            )
        reserved = {"batch_size", "beam_size", "language"} & set(self.options)
        if reserved:
            raise ConfigError(f"give {', '.join(sorted(reserved))} as Config fields, not in options")
        if not isinstance(self.pack, bool):
            raise ConfigError(f"pack must be True or False, got {self.pack!r}")
        check_options(self.options)
        check_channels(self.channels, self.channel_names)
        if self.channel_names is not None:  # a list (from JSON) is kept as a tuple
            object.__setattr__(self, "channel_names", tuple(self.channel_names))

    def replace(self, **changes: Any) -> Config:
        """A copy with some settings changed; a label, unless given, follows the settings that changed.

        >>> Config(mode="sequential", num_workers=24, label="before: sequential, num_workers=24").replace(num_workers=6).label
        'before: sequential, num_workers=6'
        """
        if "label" not in changes and self.label:
            changes = {**changes, "label": relabel(self, changes)}
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        """The settings that differ from the defaults, readable: ``sequential, num_workers=24``."""
        defaults = Config()
        shown = [f"{name}={_label_value(getattr(self, name))}" for name in _labelled_fields()
                 if getattr(self, name) != getattr(defaults, name)]
        return f"{self.label} ({', '.join(shown) or 'defaults'})" if self.label else ", ".join(shown) or "default settings"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """How a notebook shows a Config: only the settings that differ from the defaults,
        ``Config(mode='sequential', num_workers=24)``, instead of every field."""
        defaults = Config()
        shown = [f"{name}={getattr(self, name)!r}" for name in [f.name for f in dataclasses.fields(self)]
                 if getattr(self, name) != getattr(defaults, name)]
        printer.text(f"Config({', '.join(shown)})")

    def to_dict(self) -> dict:
        """Plain values, for JSON."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**values)


# words a label may use for a setting's value instead of "name=value" (they follow the setting too)
LABEL_WORDS = {("batch_size", "auto"): "batch size from memory"}
# where and which model runs: rewritten where a label names them, never added (a comparison runs
# both sides there; the settings table shows them)
PLACEMENT = ("model", "device", "device_index", "compute_type")


def relabel(config: Config, changes: dict[str, Any]) -> str:
    """``config.label`` rewritten for ``changes``: each changed setting's ``name=old`` (or the word
    the label uses for it, such as the mode's name) becomes its new value, else ``name=new`` is
    added (not for the :data:`PLACEMENT` settings)."""
    import re

    label = config.label
    for name, new in changes.items():
        old = getattr(config, name)
        if name == "label" or new == old:
            continue
        if name == "options":
            changed = {k: v for k, v in new.items() if old.get(k, object()) != v}
            label += "".join(f", {k}={_label_value(v)}" for k, v in changed.items())
            continue
        text = f"{name}={_label_value(new)}"
        bare = str(old) if isinstance(old, str) and len(old) > 2 else None  # a value named alone: "sequential"
        words = [(f"{name}={_label_value(old)}", text), (LABEL_WORDS.get((name, old)), text),
                 (bare, _label_value(new))]
        for word, replacement in [(word, replacement) for word, replacement in words if word]:
            pattern = rf"(?<![\w=.-]){re.escape(word)}(?![\w.-])"
            if re.search(pattern, label):
                label = re.sub(pattern, replacement.replace("\\", "\\\\"), label, count=1)
                break
        else:
            if name not in PLACEMENT:
                label += f", {text}"
    return label


def _labelled_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(Config) if f.name != "label"]


def _label_value(value: object) -> str:
    return "none" if value is None else str(value)


def check_language(language: object) -> None:
    """None (detect) or a language code Whisper knows; a ConfigError naming the codes otherwise."""
    if language is None:
        return
    from whisperkit.core.whisper_internals import language_codes

    codes = language_codes()
    if not isinstance(language, str) or language not in codes:
        raise ConfigError(
            f"unknown language {language!r}; leave it unset (None) to detect, or use one of: {', '.join(codes)}"
        )


_SWITCHES = ("vad_filter", "without_timestamps", "condition_on_previous_text", "word_timestamps",
             "suppress_blank", "multilingual", "log_progress")
_TEXTS = ("initial_prompt", "prefix", "hotwords")
_OPTIONAL_NUMBERS = ("compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold")
TASKS = ("transcribe", "translate")


def check_options(options: dict[str, Any]) -> None:
    """Check the faster-whisper options whisperkit knows the meaning of (types and ranges).

    Names faster-whisper does not take are refused when the run starts, against its signature.
    """
    for name, value in options.items():
        if not isinstance(name, str):
            raise ConfigError(f"option names must be strings, got {name!r}")
        if name == "temperature":
            values = value if isinstance(value, (list, tuple)) else [value]
            if not values:
                raise ConfigError("temperature must be a number or a non-empty list of numbers")
            for item in values:
                check_number(item, "temperature", 0.0, MAX_TEMPERATURE)
        elif name == "best_of":
            check_whole(value, "best_of", 1, MAX_BEST_OF)
        elif name == "patience":
            check_number(value, "patience", 0.0, MAX_PATIENCE, above=True)
        elif name in ("length_penalty", "repetition_penalty"):
            check_number(value, name, 0.0, 10.0, above=True)
        elif name == "no_repeat_ngram_size":
            check_whole(value, name, 0, 64)
        elif name == "max_new_tokens" and value is not None:
            check_whole(value, name, 1, 448, why="Whisper's text context")
        elif name == "chunk_length" and value is not None:
            check_whole(value, name, 1, 30, why="seconds; Whisper's window is 30 s")
        elif name == "hallucination_silence_threshold" and value is not None:
            check_number(value, name, 0.0, above=True)
        elif name in _OPTIONAL_NUMBERS and value is not None:
            check_number(value, name, -1e6, 1e6)
        elif name in _SWITCHES and not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
        elif name in _TEXTS and value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string or None, got {type(value).__name__}")
        elif name == "vad_parameters" and not (value is None or isinstance(value, dict) or hasattr(value, "threshold")):
            raise ConfigError(f"vad_parameters must be a dict of VAD settings or None, got {type(value).__name__}")
        elif name == "task" and value not in TASKS:
            raise ConfigError(f"task must be one of: {', '.join(TASKS)}; got {value!r}")


# Decoding settings a comparison shows, in this order.
DECODING_SETTINGS = (
    "vad_filter",
    "without_timestamps",
    "condition_on_previous_text",
    "temperature",
    "compression_ratio_threshold",
    "log_prob_threshold",
    "no_speech_threshold",
)
IGNORED_IN_BATCHED = ("compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold")


def decoding_settings(config: Config) -> dict:
    """The decoding settings as they take effect in faster-whisper 1.2 for ``config``.

    Batched mode defaults to ``vad_filter=True`` and ``without_timestamps=True`` (sequential:
    both False), always decodes without the previous text as prompt, uses only the first
    temperature (no fallback) and ignores the three thresholds; this says so.
    """
    import inspect

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    batched = config.mode in ("batched", "corpus")  # corpus mode decodes with the batched pipeline
    function = BatchedInferencePipeline.transcribe if batched else WhisperModel.transcribe
    parameters = inspect.signature(function).parameters
    settings = {name: parameters[name].default for name in DECODING_SETTINGS}
    settings.update({k: v for k, v in config.options.items() if k in settings})
    temperatures = settings["temperature"]
    if not isinstance(temperatures, (list, tuple)):
        temperatures = [temperatures]
    if batched:
        settings["condition_on_previous_text"] = False
        settings["temperature"] = f"{temperatures[0]} (no fallback)"
        for name in IGNORED_IN_BATCHED:
            settings[name] = "ignored"
    else:
        for name in IGNORED_IN_BATCHED:  # None turns a threshold off: the same as batched mode ignoring it
            if settings[name] is None:
                settings[name] = "ignored"
        settings["temperature"] = (
            f"{temperatures[0]} (no fallback)" if len(temperatures) == 1
            else f"{', '.join(str(t) for t in temperatures)} (fallback)"
        )
    return {"beam_size": config.beam_size, "language": config.language or "detect", **settings}


def matched_options(batched: Config) -> dict:
    """Options that make a sequential run decode as ``batched`` does.

    With ``Config(segmentation="batched")`` the sequential run also decodes the batched
    side's chunks: the VAD settings (``vad_filter``, ``vad_parameters``, ``chunk_length``,
    ``clip_timestamps``) are passed on for cutting them, not to faster-whisper.
    """
    effective = decoding_settings(batched.replace(mode="batched"))
    temperature = batched.options.get("temperature", 0.0)
    first = temperature[0] if isinstance(temperature, (list, tuple)) else temperature
    cutting = {k: batched.options[k] for k in ("vad_parameters", "chunk_length", "clip_timestamps")
               if k in batched.options}
    return {
        **cutting,
        "vad_filter": effective["vad_filter"],
        "without_timestamps": effective["without_timestamps"],
        "condition_on_previous_text": False,
        "temperature": first,
        "compression_ratio_threshold": None,
        "log_prob_threshold": None,
        "no_speech_threshold": None,
    }


class Settings(dict):
    """What one transcription ran with, frozen: ``Transcript.config`` and ``CorpusResult.config``.

    A dict to read (``t.config["batch_size"]``, ``.get(...)``, ``json.dumps``) that cannot be
    changed: each result holds its own snapshot, so an out-of-memory retry records its smaller
    batch size in a new snapshot (:meth:`replace`) and never in another result's. Nested dicts
    are Settings too and lists are :class:`FrozenList` (equal to the list given);
    :meth:`to_dict` gives plain values back.

    >>> s = Settings({"mode": "batched", "batch_size": 8})
    >>> s.replace(batch_size=4)["batch_size"], s["batch_size"]
    (4, 8)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__((key, _frozen(value)) for key, value in dict(*args, **kwargs).items())

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (this one stays as it is)."""
        return Settings({**self, **changes})

    def to_dict(self) -> dict:
        """Plain dicts and lists, for JSON and for changing."""
        return {key: _thawed(value) for key, value in self.items()}

    def __reduce__(self) -> tuple:  # pickle and copy rebuild it whole instead of setting items one by one
        return (Settings, (dict(self),))

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a result's config is the snapshot of the settings it ran with and cannot be changed; "
                        "use config.replace(name=value) for a changed copy, or config.to_dict() for a plain dict")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse


class FrozenList(list):
    """A list in a :class:`Settings` snapshot: reads, compares and serializes as the list it
    was made from (``Settings({"c": ["a"]})["c"] == ["a"]``), but cannot be changed."""

    def __reduce__(self) -> tuple:
        return (FrozenList, (list(self),))

    def __hash__(self) -> int:  # type: ignore[override]  # unchangeable, so hashable like a tuple
        return hash(tuple(self))

    _refuse = Settings._refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = extend = insert = pop = remove = clear = _refuse
    sort = reverse = _refuse


def _frozen(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, Settings):
        return Settings(value)
    if isinstance(value, list) and not isinstance(value, FrozenList):
        return FrozenList(_frozen(item) for item in value)
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _thawed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_thawed(item) for item in value]
    return value
