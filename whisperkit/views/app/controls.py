"""The app's controls: model, device, compute type, mode, batch size, audio or a folder; what they ask for."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ipywidgets

    from whisperkit.core.config import Config

from whisperkit.core.channels import CHANNEL_MODES, DEFAULT_CHANNELS

BUNDLED_CHOICE = "tiny.en (bundled)"
OFFLINE = "works offline"
NEEDS_DOWNLOAD = "needs a download"
DEFAULT_REPEATS = 3  # alternating repeats per side (Compare) and per batch size (Sweep) unless quick
DEVICE_CHOICES = ("auto", "cpu", "cuda")
COMPUTE_TYPE_CHOICES = ("auto", "int8", "int8_float16", "float16", "float32")
MODE_CHOICES = ("batched", "sequential", "corpus")
DEFAULT_SAMPLE = "gettysburg"


class Controls:
    """The input widgets, their layout (``box``) and the :class:`~whisperkit.Config` they describe.

    ``model`` (Dropdown), ``model_path`` (Text, a local CTranslate2 folder that overrides
    ``model``), ``device``, ``compute_type``, ``mode``, ``channels`` (Dropdowns), ``batch_size`` (IntSlider
    1-64), ``batch_auto`` (Checkbox: batch size from device memory), ``audio`` (Dropdown of
    bundled samples), ``audio_path`` (Text; overrides ``audio``), ``upload`` (FileUpload; an
    uploaded file is saved to a temporary folder, removed with the app, and its path put in
    ``audio_path``); in corpus mode ``folder`` (Text: a folder of recordings, or ``@list.txt``;
    empty: the ten bundled clips) and ``pack`` (Checkbox: several short clips per window) take
    the place of the audio controls; ``repeats`` (BoundedIntText, default 3) and ``quick``
    (Checkbox: one run each, noise not measured) for Compare and Sweep; ``sweep_sizes`` (Text: the
    batch sizes Sweep measures); the ``transcribe_button``, ``compare_button`` (not in corpus
    mode: its two sides are single-file modes) and ``sweep_button``; and ``plan`` (HTML: what each
    button will run with the controls as they are, and which controls it does not use).
    """

    def __init__(self) -> None:
        import ipywidgets as w

        from whisperkit.core.samples import list_samples
        from whisperkit.experiments.runners import DEFAULT_SWEEP

        wide = {"description_width": "110px"}
        box = w.Layout(width="330px")
        self.model = w.Dropdown(options=model_choices(), value=BUNDLED_CHOICE, description="Model", style=wide,
                                layout=box, tooltip="models marked 'needs a download' work only online, once")
        self.model_path = w.Text(placeholder="or a local CTranslate2 folder", description="Model folder",
                                 style=wide, layout=box)
        self.device = w.Dropdown(options=DEVICE_CHOICES, value="auto", description="Device", style=wide, layout=box)
        self.compute_type = w.Dropdown(options=COMPUTE_TYPE_CHOICES, value="auto", description="Compute type",
                                       style=wide, layout=box)
        self.mode = w.Dropdown(options=MODE_CHOICES, value="batched", description="Mode", style=wide, layout=box)
        self.channels = w.Dropdown(options=CHANNEL_MODES, value=DEFAULT_CHANNELS, description="Channels", style=wide,
                                   layout=box, tooltip="split: each channel of a call or interview as a speaker of "
                                                       "its own; mix: to mono; auto: split when the channels differ")
        self.batch_size = w.IntSlider(value=8, min=1, max=64, description="Batch size", style=wide,
                                      layout=w.Layout(width="300px"))
        self.batch_auto = w.Checkbox(value=False, description="auto", indent=False,
                                     tooltip="batch size from free device memory",
                                     layout=w.Layout(width="70px", margin="0 0 0 8px"))
        samples = list_samples()
        self.audio = w.Dropdown(options=samples, value=DEFAULT_SAMPLE if DEFAULT_SAMPLE in samples else samples[0],
                                description="Sample", style=wide, layout=box)
        self.audio_path = w.Text(placeholder="or a path to an audio/video file", description="Audio file",
                                 style=wide, layout=box)
        self.upload = w.FileUpload(accept="audio/*,video/*", multiple=False, description="Upload audio",
                                   layout=w.Layout(margin="2px 0 0 114px"))
        self.folder = w.Text(placeholder="empty: the ten bundled clips", description="Folder", style=wide,
                             layout=box, tooltip="corpus mode: a folder of recordings (searched recursively) "
                                                 "or @list.txt")
        self.pack = w.Checkbox(value=True, description="pack short clips into shared 30 s windows", indent=False,
                               layout=w.Layout(margin="2px 0 0 114px"))
        self.repeats = w.BoundedIntText(value=DEFAULT_REPEATS, min=2, max=20, description="Repeats", style=wide,
                                        layout=w.Layout(width="180px"),
                                        tooltip="Compare and Sweep: alternating runs of each side or batch size")
        self.quick = w.Checkbox(value=False, description="quick: one run each (noise not measured)", indent=False,
                                layout=w.Layout(margin="2px 0 0 8px"))
        self.sweep_sizes = w.Text(value=", ".join(str(size) for size in DEFAULT_SWEEP), description="Sweep sizes",
                                  style=wide, layout=box, tooltip="the batch sizes Sweep measures, comma-separated")
        self.plan = w.HTML(value="")
        self.transcribe_button = w.Button(description="Transcribe", button_style="primary", icon="play")
        self.compare_button = w.Button(description="Compare before/after", icon="balance-scale",
                                       layout=w.Layout(width="190px"))
        self.sweep_button = w.Button(description="Sweep batch sizes", icon="line-chart",
                                     layout=w.Layout(width="170px"))
        self.buttons = (self.transcribe_button, self.compare_button, self.sweep_button)
        self._upload_dir = tempfile.mkdtemp(prefix="whisperkit-upload-")
        weakref.finalize(self, shutil.rmtree, self._upload_dir, True)
        self.upload.observe(self._on_upload, names="value")
        self.mode.observe(self._on_batch_controls, names="value")
        self.mode.observe(self._on_mode, names="value")
        self.batch_auto.observe(self._on_batch_controls, names="value")
        self.quick.observe(self._on_quick, names="value")
        for control in (self.model, self.model_path, self.mode, self.batch_size, self.batch_auto, self.repeats,
                        self.quick, self.sweep_sizes, self.pack):
            control.observe(self._on_plan, names="value")

        left = w.VBox([self.model, self.model_path, self.device, self.compute_type, self.channels],
                      layout=w.Layout(margin="0 24px 0 0"))
        self._file_inputs = w.VBox([self.audio, self.audio_path, self.upload])
        self._corpus_inputs = w.VBox([self.folder, self.pack], layout=w.Layout(display="none"))
        right = w.VBox([self.mode, w.HBox([self.batch_size, self.batch_auto]), self._file_inputs,
                        self._corpus_inputs])
        experiments = w.VBox([w.HBox([self.repeats, self.quick]), self.sweep_sizes])
        self.box: ipywidgets.Box = w.VBox([w.HBox([left, right]), experiments, w.HBox(list(self.buttons)), self.plan])
        self._on_plan()

    def config(self) -> Config:
        """The :class:`whisperkit.Config` the controls describe (raises ConfigError if invalid)."""
        from whisperkit.core.config import Config

        return Config(
            model=self.model_name(),
            device=self.device.value,
            compute_type=self.compute_type.value,
            mode=self.mode.value,
            batch_size="auto" if self.batch_auto.value else int(self.batch_size.value),
            pack=bool(self.pack.value),
            channels=self.channels.value,
        )

    def repeat_count(self) -> int:
        """Runs of each side (Compare) or batch size (Sweep): 1 in quick mode, else ``repeats``."""
        return 1 if self.quick.value else int(self.repeats.value)

    def sweep_batch_sizes(self) -> list[int]:
        """The batch sizes typed in ``sweep_sizes`` (a ConfigError naming the text if it is not a list of them)."""
        from whisperkit.core.config import MAX_BATCH_SIZE
        from whisperkit.errors import ConfigError

        text = self.sweep_sizes.value
        parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
        if not parts or not all(part.isdigit() and 1 <= int(part) <= MAX_BATCH_SIZE for part in parts):
            raise ConfigError(f"sweep sizes {text!r}: give batch sizes from 1 to {MAX_BATCH_SIZE}, comma-separated (1, 2, 4, 8)")
        return list(dict.fromkeys(int(part) for part in parts))

    def plan_lines(self) -> list[str]:
        """What each button will run with the controls as they are (shown under the buttons)."""
        from whisperkit.errors import WhisperkitError

        mode = self.mode.value
        batch = "batch size from memory" if self.batch_auto.value else f"batch size {self.batch_size.value}"
        repeats = self.repeat_count()
        times = "one run each (quick mode: noise not measured)" if repeats == 1 else f"{repeats} alternating runs each"
        try:
            sizes = ", ".join(str(size) for size in self.sweep_batch_sizes())
        except WhisperkitError:
            sizes = "(not a list of batch sizes)"
        transcribe = {"sequential": "sequential (the batch size is not used)", "batched": f"batched at {batch}",
                      "corpus": f"the corpus at {batch}, {'packed' if self.pack.value else 'not packed'}"}[mode]
        compare = ("not in corpus mode (its two sides are single-file modes)" if mode == "corpus" else
                   f"sequential with num_workers=24 against batched at {batch} with num_workers=6, {times} "
                   "(the mode menu is not used)")
        sweep = (f"{'the corpus' if mode == 'corpus' else 'batched'} at batch sizes {sizes}, {times} "
                 f"(the batch-size slider is not used{'; sequential mode sweeps batched' if mode == 'sequential' else ''})")
        return [f"Transcribe: {transcribe}.", f"Compare: {compare}.", f"Sweep: {sweep}."]

    def model_name(self) -> str | None:
        """The model folder if one is typed, else the dropdown's name (None: the bundled tiny.en)."""
        folder = self.model_path.value.strip()
        if folder:
            return os.path.expanduser(folder)
        return None if self.model.value == BUNDLED_CHOICE else self.model.value

    def audio_source(self) -> str | list[str]:
        """What to transcribe: the typed (or uploaded) path, else the chosen bundled sample; in
        corpus mode the typed folder, else the ten bundled clips."""
        from whisperkit.core.samples import sample_path, short_clips

        if self.mode.value == "corpus":
            folder = self.folder.value.strip()
            return os.path.expanduser(folder) if folder else short_clips()
        typed = self.audio_path.value.strip()
        return os.path.expanduser(typed) if typed else sample_path(self.audio.value)

    def enable(self, enabled: bool) -> None:
        """Enable or disable the three buttons (disabled while a job runs; compare also in corpus mode)."""
        for button in self.buttons:
            button.disabled = not enabled
        self.compare_button.disabled = not enabled or self.mode.value == "corpus"

    def _on_mode(self, change: dict[str, Any] | None = None) -> None:
        corpus = self.mode.value == "corpus"
        self._file_inputs.layout.display = "none" if corpus else None
        self._corpus_inputs.layout.display = None if corpus else "none"
        self.compare_button.disabled = corpus or self.transcribe_button.disabled

    def _on_upload(self, change: dict[str, Any]) -> None:
        """Save the uploaded file to the app's temporary folder and put its path in ``audio_path``."""
        files = change["new"]
        if not files:
            return
        upload = files[-1]
        path = os.path.join(self._upload_dir, _safe_file_name(upload["name"]))
        with open(path, "wb") as handle:
            handle.write(bytes(upload["content"]))
        self.audio_path.value = path

    def _on_batch_controls(self, change: dict[str, Any] | None = None) -> None:
        # sequential mode keeps the slider: Compare's batched side uses it (the plan says Transcribe does not)
        self.batch_size.disabled = bool(self.batch_auto.value)

    def _on_quick(self, change: dict[str, Any] | None = None) -> None:
        self.repeats.disabled = bool(self.quick.value)

    def _on_plan(self, change: dict[str, Any] | None = None) -> None:
        import html

        self.plan.value = ('<div style="font-size:12px;color:#444;line-height:1.4">'
                           + "<br>".join(html.escape(line) for line in self.plan_lines()) + "</div>")


def model_choices() -> list[tuple[str, str]]:
    """The model menu as (shown text, value) pairs: the bundled tiny.en first, then faster-whisper's
    named models, each marked as working offline (in the local cache) or needing a download."""
    from faster_whisper.utils import available_models

    choices = [(f"{BUNDLED_CHOICE}: {OFFLINE}", BUNDLED_CHOICE)]
    for name in available_models():
        if name != "tiny.en":
            choices.append((f"{name}: {OFFLINE if _cached(name) else NEEDS_DOWNLOAD}", name))
    return choices


def _cached(name: str) -> bool:
    """Whether faster-whisper finds the named model in the local cache without a network."""
    from faster_whisper.utils import download_model

    try:
        download_model(name, local_files_only=True)
    except Exception:  # huggingface_hub raises several kinds; all mean "not here"
        return False
    return True


def _safe_file_name(name: str) -> str:
    base = os.path.basename(name or "upload")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", base) or "upload"
