"""What a comparison or a sweep shows, in words that never crown a value its repeats do not separate.

Two sets of repeated measurements differ only when their ranges do not overlap (every repeat of
one side is faster than every repeat of the other); with one run per side the noise is not
measured, and the sentence says so ("a single run per side"). Sweeps also know that batch sizes
at or above the number of chunks (corpus mode: windows) do the same work.

>>> Spread.of([0.9, 0.8, 1.0]).text("wall_seconds", "s")
'0.90 s (0.80-1.00 over 3 repeats)'
>>> separated([0.8, 0.9, 1.0], [0.95, 1.1, 1.2]), separated([0.8, 0.9], [1.0, 1.1])
(False, True)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from whisperkit.checks import is_missing
from whisperkit.experiments.metrics import metric


class Comparison(Protocol):
    """What a verdict reads of :class:`~whisperkit.experiments.results.Comparison` (a protocol,
    so this module need not import the results it judges)."""

    @property
    def before_runs(self) -> Sequence[Any]: ...
    @property
    def after_runs(self) -> Sequence[Any]: ...
    @property
    def speedup(self) -> float: ...


class Sweep(Protocol):
    """What a verdict reads of :class:`~whisperkit.experiments.results.Sweep`."""

    @property
    def points(self) -> Sequence[Any]: ...
    @property
    def runs(self) -> Sequence[Any]: ...
    @property
    def repeat_rtfx(self) -> Any: ...
    @property
    def best(self) -> Any: ...
    @property
    def stopped_because(self) -> Any: ...

QUICK = "a single run each: quick mode, noise not measured"


@dataclass(frozen=True)
class Spread:
    """The minimum, median and maximum of ``count`` repeated measurements."""

    low: float
    median: float
    high: float
    count: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        measured = [float(v) for v in values if not is_missing(v)]
        if not measured:
            nan = float("nan")
            return cls(nan, nan, nan, 0)
        return cls(min(measured), statistics.median(measured), max(measured), len(measured))

    def text(self, key: str, unit: str = "") -> str:
        """``"0.90 s (0.80-1.00 over 3 repeats)"``, with the metric ``key``'s digits; one run: ``"0.90 s"``."""
        digits = metric(key).digits
        suffix = f" {unit}" if unit else ""
        median = f"{self.median:,.{digits}f}{suffix}"
        if self.count < 2:
            return median
        return f"{median} ({self.low:,.{digits}f}-{self.high:,.{digits}f} over {self.count} repeats)"


def separated(left: Sequence[float], right: Sequence[float]) -> bool:
    """True when each side has at least two repeats and their ranges do not overlap."""
    a, b = Spread.of(left), Spread.of(right)
    if a.count < 2 or b.count < 2:
        return False
    return a.high < b.low or b.high < a.low


def comparison_verdict(comparison: Comparison) -> str:
    """The speedup in words: ``"after is 1.88x faster (...)"``, ``"no difference within noise (...)"``,
    or, with one run per side, the speedup marked as a single run."""
    speedup = comparison.speedup
    if is_missing(speedup) or speedup <= 0:
        return "speedup unknown"
    before = [r.transcript.wall_seconds for r in comparison.before_runs]
    after = [r.transcript.wall_seconds for r in comparison.after_runs]
    walls = f"wall {Spread.of(before).text('wall_seconds', 's')} before, {Spread.of(after).text('wall_seconds', 's')} after"
    direction = f"after is {speedup:.2f}x faster" if speedup >= 1 else f"after is {1 / speedup:.2f}x slower"
    if min(len(before), len(after)) < 2:
        return f"{direction} ({QUICK})"
    if not separated(before, after):
        return f"no difference within noise ({walls}: the ranges overlap)"
    return f"{direction} ({walls})"


def sweep_tied(sw: Sweep) -> list[int]:
    """The batch sizes a sweep cannot tell from the fastest, smallest first: those whose RTFx
    repeats overlap the fastest's, and, where the fastest batch already held every chunk, every
    other size that did too (same work). Empty when no batch size fitted."""
    by_noise, saturated = _ties(sw)
    return sorted(by_noise | saturated)


def sweep_verdict(sw: Sweep) -> str:
    """What a sweep found, in one sentence (see the module notes)."""
    fitting = _fitting(sw)
    if not fitting:
        return "no batch size fitted in memory"
    fastest = max(fitting, key=lambda p: p.rtfx)
    rtfx = Spread.of(sw.repeat_rtfx.get(fastest.batch_size) or [fastest.rtfx]).text("rtfx")
    if len(fitting) == 1:
        return f"only batch size {fastest.batch_size} was measured (RTFx {rtfx})"
    by_noise, saturated = _ties(sw)
    tied = sorted(by_noise | saturated)
    if tied == [fastest.batch_size]:
        if not _repeated(sw):
            return f"batch size {fastest.batch_size} was fastest (RTFx {rtfx}; {QUICK}, so a close second may be as fast)"
        return f"batch size {fastest.batch_size} is fastest (RTFx {rtfx}), beyond the noise of every other size"
    reasons = []
    if len(by_noise) > 1:
        digits = metric("rtfx").digits
        low = min(p.rtfx for p in fitting if p.batch_size in by_noise)
        reasons.append(f"batch sizes {_names(sorted(by_noise))} do not differ within noise (median RTFx "
                       f"{low:.{digits}f} to {fastest.rtfx:.{digits}f}, their repeats overlapping)")
    if len(saturated) > 1:
        reasons.append(f"batch sizes {_names(sorted(saturated))} each hold all {_chunks(sw)} chunk(s) in one batch, "
                       "so they do the same work")
    return "; ".join(reasons) + f": the smallest, {tied[0]}, needs the least memory"


def reconcile_batch_sizes(sweep: Sweep | None = None, autotuned: Sweep | None = None,
                          recommended: int | None = None) -> str:
    """One sentence that reconciles a sweep's finding, autotune's choice (``autotuned.best``) and the
    memory model's recommendation (:func:`whisperkit.recommend_batch_size`), given any of them.

    The measured sweep decides speed; autotune stops doubling once throughput rises less than 5 %
    (so it may stop below sizes that are as fast); the memory model estimates what fits in device
    memory (on a CPU it is a fixed default measured on another recording), not what is fastest here.
    """
    tied = sweep_tied(sweep) if sweep is not None else []
    chosen = autotuned.best if autotuned is not None else None
    answers = [value for value in (chosen, recommended) if value is not None]
    if sweep is None and not answers:
        return "no batch size was measured or recommended"
    if sweep is not None and not tied:
        return "no batch size of the sweep fitted in memory: use batch size 1 or a smaller model"
    use = tied[0] if tied else (chosen if chosen is not None else recommended)
    agree = all(value in tied for value in answers) if tied else len(set(answers)) == 1
    if agree:
        who = [name for name, given in (("the sweep", sweep), ("autotune", chosen), ("the memory model", recommended))
               if given is not None]
        many = f" (any of {_names(tied)}, which the sweep cannot tell apart)" if len(tied) > 1 else ""
        if len(who) == 1:
            return f"{who[0].capitalize()} gives batch size {use}{many}"
        return f"{_names(who).capitalize()} agree: batch size {use}{many}"
    parts = []
    if tied:
        parts.append(f"the sweep measured every size and finds {_names(tied)} fastest within its noise" if len(tied) > 1
                     else f"the sweep measured every size and finds {tied[0]} fastest")
    if chosen is not None:
        parts.append(f"autotune chose {chosen} because it stops doubling when throughput rises little "
                     f"({autotuned.stopped_because})" if autotuned is not None and autotuned.stopped_because
                     else f"autotune chose {chosen}")
    if recommended is not None:
        parts.append(f"the memory model's {recommended} is an estimate of what fits in memory (on a CPU, a fixed default "
                     "measured on another recording), not a speed measured here")
    reason = "the smallest batch as fast as the fastest measured" if tied else "the measured choice"
    return f"They answer different questions: {'; '.join(parts)}; so use batch size {use}, {reason}"


def _ties(sw: Sweep) -> tuple[set[int], set[int]]:
    """Batch sizes tied with the fastest by noise (the fastest included), and, where the fastest held
    every chunk in one batch, the sizes that did too (else an empty set)."""
    fitting = _fitting(sw)
    if not fitting:
        return set(), set()
    fastest = max(fitting, key=lambda p: p.rtfx).batch_size
    repeats, repeated = sw.repeat_rtfx, _repeated(sw)
    by_noise = {p.batch_size for p in fitting
                if p.batch_size == fastest or (repeated and not separated(repeats[p.batch_size], repeats[fastest]))}
    saturated = _saturated(sw)
    return by_noise, saturated if fastest in saturated else set()


def _fitting(sw: Sweep) -> list:
    return [p for p in sw.points if not p.oom and not is_missing(p.rtfx)]


def _repeated(sw: Sweep) -> bool:
    """Every fitting batch size was measured at least twice."""
    return all(len(sw.repeat_rtfx.get(p.batch_size, [])) >= 2 for p in _fitting(sw))


def _chunks(sw: Sweep) -> int | None:
    """The number of chunks (windows) every run of the sweep decoded, None where unknown or different."""
    counts = {run.transcript.chunks for run in sw.runs}
    if len(counts) != 1:
        return None
    count = counts.pop()
    return count if isinstance(count, int) and count > 0 else None


def _saturated(sw: Sweep) -> set[int]:
    """Batch sizes that held every chunk at once (they all do the same work)."""
    chunks = _chunks(sw)
    return {p.batch_size for p in _fitting(sw) if chunks is not None and p.batch_size >= chunks}


def _names(items: Sequence[object]) -> str:
    """``"4, 8 and 16"``."""
    texts = [str(item) for item in items]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]
