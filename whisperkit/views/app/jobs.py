"""The app's jobs: transcribe, compare the seed's before and after, sweep batch sizes.

Each job takes the audio, the :class:`~whisperkit.Config` the controls describe, ``watch`` (handed
to the runners as ``on_start``, so the live chart follows each run's sampler) and ``step``, called
as ``step(done, total, label)`` whenever the job moves on; it returns the result to show. The app
runs a job on a background thread (:class:`whisperkit.views.app.window.App`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from whisperkit.core.config import Config
    from whisperkit.experiments.results import Comparison, Run, Sweep
    from whisperkit.measure.sampler import Sampler

    Result = Run | Comparison | Sweep

Watch = Callable[["Sampler"], None]
Audio = str | list[str]  # a file; in corpus mode a folder, @list.txt, or a list of files
Step = Callable[[int, int, str], None]  # (steps done, steps in all, what runs now)

LABELS = {"transcribe": "Transcribing", "compare": "Comparing before and after", "sweep": "Sweeping batch sizes"}


def transcribe(audio: Audio, config: Config, watch: Watch, step: Step) -> Run:
    """One monitored run of ``config`` (in corpus mode over the files of ``audio``)."""
    from whisperkit.experiments import runners

    return runners.run(audio, config, progress=False, on_start=watch)


def compare(audio: Audio, config: Config, watch: Watch, step: Step) -> Comparison:
    """The seed's before and after, each with the controls' model, device and compute type."""
    from whisperkit.errors import ConfigError
    from whisperkit.experiments import runners

    if config.mode == "corpus":
        raise ConfigError("compare runs the seed's two single-file modes; pick batched or sequential mode")
    chosen = {"model": config.model, "device": config.device, "compute_type": config.compute_type}
    before = runners.SEED_BEFORE.replace(**chosen)
    after = runners.SEED_AFTER.replace(**chosen)
    step(0, 2, "Comparing: before (sequential, num_workers=24)")

    def finished(side: str, run_: Run) -> None:
        step(1 if side == "before" else 2, 2, "Comparing: after (batched)")

    return runners.compare(cast(str, audio), before, after, progress=False, on_start=watch, on_run=finished)


def sweep(audio: Audio, config: Config, watch: Watch, step: Step) -> Sweep:
    """Batched (or corpus) runs at each of :data:`whisperkit.experiments.runners.DEFAULT_SWEEP`."""
    from whisperkit.experiments import runners

    sizes = runners.DEFAULT_SWEEP
    step(0, len(sizes), f"Sweeping batch sizes: {sizes[0]} (1 of {len(sizes)})")
    done = [0]

    def finished(size: int, run_: Run) -> None:
        done[0] += 1
        following = f"{sizes[done[0]]} ({done[0] + 1} of {len(sizes)})" if done[0] < len(sizes) else "done"
        step(done[0], len(sizes), f"Sweeping batch sizes: {following}")

    mode = "corpus" if config.mode == "corpus" else "batched"
    return runners.sweep(audio, sizes, config.replace(mode=mode), progress=False, on_start=watch, on_run=finished)


JOBS: dict[str, Callable[[Audio, Config, Watch, Step], Result]] = {
    "transcribe": transcribe, "compare": compare, "sweep": sweep,
}
