"""Choosing a batch size: from a memory model on a GPU, from measured throughput on a CPU.

The memory model, each term with its source (:func:`memory_terms` lists them with their sizes)::

    needed MiB = weights + runtime overhead + batch_size x max(encoder item, decoder item)

    weights          parameters x bytes per weight: float32 4, float16 2, int8* 1.05    (estimated, int8)
    runtime overhead 800 MiB: CUDA context, cuBLAS workspace, allocator slack          (fitted)
    encoder item     heads x 1500 x 1500 one layer's attention scores                   (exact)
                   + 1500 x d_model         the encoder output                          (exact)
                   + 8 x 1500 x d_model     one layer's other activations               (estimated)
    decoder item     1500 x d_model         the encoder output, kept while decoding     (exact)
                   + 2 x L x 1500 x d_model cross-attention keys and values, every layer (exact)
                   + 2 x L x beam x T x d_model  self-attention cache, T tokens per beam (exact per
                                                 token; T = 112 fitted, +224 sequential)
    (every size x activation bytes: 2 on a GPU except float32 and int8_float32, which are 4)

Sources, so the model can be checked:

- Attention scores: CTranslate2's Python wheels are built without flash attention since 4.4.0
  (its CHANGELOG: kept only in C++ builds with ``WITH_FLASH_ATTN``; the ``flash_attention=``
  keyword of ``ctranslate2.models.Whisper`` is still accepted, and faster-whisper passes it only from a
  user's ``WhisperModel(..., flash_attention=True)``), so
  ``dot_product_attention`` (``src/layers/attention.cc``) materializes one layer's
  ``[batch, heads, 1500, 1500]`` scores (softmax in place), about 86 MiB per item for large-v3,
  turbo and distil-large-v3 in float16, freed before decoding: the encoder and decoder peaks do
  not add up, so an item costs the larger of the two.
- Cross-attention keys and values are computed once per decoder layer and kept at batch
  granularity, not copied per beam (``TransformerDecoder::replicate_state`` excludes the
  ``memory*`` states); the self-attention cache grows by one token per step for every beam.
- Activations: with a model saved in float16 (faster-whisper's are), CTranslate2 runs ``int8``
  on a GPU as ``int8_float16`` (``resolve_compute_type`` in ``src/types.cc``), so int8 costs the
  activations of float16 and less weight memory: never a smaller batch than ``int8_float16``.
  On the CPU, activations are float32.
- Architectures: OpenAI's model card (parameters, layers, widths); distil-whisper's model cards
  (distil-large-v2/v3 and distil-medium.en: 2 decoder layers, distil-small.en: 4); turbo:
  4 decoder layers.
- Fitted: ``T = 112`` tokens per beam at the batch's peak (a 30 s window of speech is about 60
  to 120 tokens) and the 800 MiB overhead are fitted to faster-whisper's README rows for
  large-v2 with beam 5 at batch size 8 (6090 MB float16, 4500 MB int8, RTX 3070 Ti; NVML's
  device-wide ``used``, which includes the driver's reservation, so the overhead errs on the safe
  side where the free memory already excludes it). Sequential decoding conditions
  on the previous text, up to 224 prompt tokens more. ``tests/core/test_memory_model.py`` checks the
  model against every published row found (faster-whisper's README, old and new, and a user's
  large-v3, turbo and distil-large-v3 rows in faster-whisper issue #1030): all within 15 %.
- Not modelled: a sequential fallback to sampling with ``best_of`` candidates copies the encoder
  output per candidate; windows shorter than 30 s; other processes allocating during the run.
- The free memory is the model's own device's (a MIG instance's where there is one), read
  once before the run.

A batch size is then the largest power of two whose estimate fits in the free device memory
less 10 % headroom, between 1 and 64. It is monotone: more memory never gives a smaller batch,
a larger model never a larger one. It is an estimate: :func:`whisperkit.autotune` measures,
and a batch that does not fit is halved at run time (:func:`halving_on_out_of_memory`).
``benchmarks/gpu_check.py`` compares it with the first batch size that runs on a real GPU.

On a CPU memory is rarely the limit; throughput is, hence the CPU recommendation, 8: on a 2-core
machine batch size 16 was within a few percent of 8 (DESIGN.md's figures, on a file not in the
repository). Measure it on any long file with
``whisperkit sweep FILE --device cpu --batch-sizes 8,16 --output-dir sweep-cpu``; batched mode
also changes the decoding settings, so ``compare(matched=True)`` isolates batching.
:func:`autotune` measures instead of estimating.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from whisperkit.checks import check_number, check_whole
from whisperkit.errors import ConfigError, DeviceError, ModelError, OutOfMemoryError, first_line
from whisperkit.measure.cuda import cuda_error_advice, is_cuda_error, is_out_of_memory

T = TypeVar("T")

if TYPE_CHECKING:
    from whisperkit.core.models import Model

MAX_RECOMMENDED_BATCH_SIZE = 64  # the largest batch size recommended (Config accepts up to config.MAX_BATCH_SIZE)
CPU_BATCH_SIZE = 8
HEADROOM = 0.10  # share of free memory left unused
RUNTIME_OVERHEAD_MB = 800.0  # fitted, see the module docstring
ENCODER_FRAMES = 1500  # encoder positions for a 30 s window (exact)
ENCODER_WORKING_ROWS = 8  # estimated: one encoder layer's live activations, in rows of d_model per position
TYPICAL_TOKENS = 112  # fitted: self-attention cache length per beam at a batch's peak (max 448)
PROMPT_TOKENS = 224  # sequential decoding's previous-text prompt, at most (faster-whisper: max_length // 2)
INT8_WEIGHT_BYTES = 1.05  # estimated: linear weights 1 byte and float32 row scales; embeddings, norms, convolutions float


@dataclass(frozen=True)
class Architecture:
    """What decides a Whisper model's memory: parameters (millions) and shapes."""

    parameters_m: float
    d_model: int
    decoder_layers: int
    encoder_heads: int


# Published sizes of the Whisper family (OpenAI's model card, distil-whisper's model cards);
# turbo and the distil models keep their teacher's encoder.
ARCHITECTURES = {
    "tiny": Architecture(39, 384, 4, 6),
    "base": Architecture(74, 512, 6, 8),
    "small": Architecture(244, 768, 12, 12),
    "medium": Architecture(769, 1024, 24, 16),
    "large": Architecture(1550, 1280, 32, 20),
    "turbo": Architecture(809, 1280, 4, 20),
    "distil-large": Architecture(756, 1280, 2, 20),
    "distil-medium": Architecture(394, 1024, 2, 16),
    "distil-small": Architecture(166, 768, 4, 12),
}

WEIGHT_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "int16": 2.0}
COMPUTE_TYPES = ("float32", "float16", "bfloat16", "int16", "int8", "int8_float32", "int8_float16",
                 "int8_bfloat16")
#: Compute types whose activations are float32 on a GPU (the rest: 16-bit; int8 runs as int8_float16).
FLOAT32_ACTIVATIONS = ("float32", "int8_float32")


@dataclass(frozen=True)
class MemoryTerm:
    """One term of the memory model: ``mb`` MiB, per batch item or once, exact or estimated."""

    name: str
    mb: float
    per_item: bool
    phase: str  # "model" (weights, overhead), "encoder" or "decoder"
    exact: bool
    source: str


def architecture(model: str) -> Architecture:
    """The architecture for a model name or a folder whose name contains one (``faster-whisper-small``).

    A name that matches nothing is treated as large, the safe side: it gives the smallest batch.
    """
    text = os.path.basename(os.path.normpath(model)).lower() if model else "tiny"
    if "turbo" in text:
        return ARCHITECTURES["turbo"]
    for prefix in ("distil-large", "distil-medium", "distil-small"):
        if prefix in text:
            return ARCHITECTURES[prefix]
    for size in ("tiny", "base", "small", "medium", "large"):
        if size in text:
            return ARCHITECTURES[size]
    return ARCHITECTURES["large"]


def names_an_architecture(model: str) -> bool:
    """True when a model name (or a folder's name) contains a known size, so estimates apply to it."""
    text = os.path.basename(os.path.normpath(model)).lower() if model else ""
    return any(size in text for size in ARCHITECTURES)


def activation_bytes(compute_type: str, device: str = "cuda") -> float:
    """Bytes per activation value: 4 on the CPU and for float32/int8_float32, else 2 (int8 on a
    GPU runs as int8_float16 for a model saved in float16)."""
    return 4.0 if device == "cpu" or compute_type in FLOAT32_ACTIVATIONS else 2.0


def weights_mb(model: str, compute_type: str, device: str = "cuda") -> float:
    """Estimated memory of the weights in MiB (float16 weights become float32 on a CPU)."""
    bytes_per_weight = WEIGHT_BYTES.get(compute_type, INT8_WEIGHT_BYTES if compute_type.startswith("int8") else 2.0)
    if device == "cpu" and compute_type in ("float16", "bfloat16"):
        bytes_per_weight = 4.0
    return architecture(model).parameters_m * 1e6 * bytes_per_weight / 2**20


def memory_terms(model: str, compute_type: str, beam_size: int = 5, *, device: str = "cuda",
                 sequential: bool = False) -> list[MemoryTerm]:
    """Every term of the memory model for ``model``, in MiB, with its source (module docstring)."""
    arch, act = architecture(model), activation_bytes(compute_type, device)
    row = ENCODER_FRAMES * arch.d_model * act / 2**20  # one value per encoder position and width, MiB
    layers = arch.decoder_layers
    tokens = TYPICAL_TOKENS + (PROMPT_TOKENS if sequential else 0)
    return [
        MemoryTerm("weights", weights_mb(model, compute_type, device), False, "model",
                   not compute_type.startswith("int8"), "parameters (model card) x bytes per weight"),
        MemoryTerm("runtime overhead", RUNTIME_OVERHEAD_MB, False, "model", False,
                   "fitted to faster-whisper's batch-8 rows"),
        MemoryTerm("encoder attention scores", attention_scores_mb(model, compute_type, device), True, "encoder", True,
                   "heads x 1500 x 1500, one layer (no flash attention)"),
        MemoryTerm("encoder output", row, True, "encoder", True, "1500 x d_model"),
        MemoryTerm("encoder layer activations", ENCODER_WORKING_ROWS * row, True, "encoder", False,
                   f"about {ENCODER_WORKING_ROWS} x 1500 x d_model"),
        MemoryTerm("encoder output kept for decoding", row, True, "decoder", True, "1500 x d_model"),
        MemoryTerm("cross-attention keys and values", 2 * layers * row, True, "decoder", True,
                   "2 x decoder layers x 1500 x d_model, not per beam"),
        MemoryTerm("self-attention cache", 2 * layers * beam_size * tokens * arch.d_model * act / 2**20, True, "decoder",
                   False, f"2 x decoder layers x beam x {tokens} tokens x d_model (tokens fitted)"),
    ]


def per_item_mb(model: str, compute_type: str, beam_size: int = 5, *, device: str = "cuda",
                sequential: bool = False) -> float:
    """Estimated memory of one more batch item (a 30 s chunk) in MiB: the larger of the encoder's
    and the decoder's peak, which do not overlap.

    >>> round(attention_scores_mb("large-v3", "float16"), 1)   # the encoder's peak for large-v3
    85.8
    """
    terms = memory_terms(model, compute_type, beam_size, device=device, sequential=sequential)
    return max(sum(t.mb for t in terms if t.phase == phase) for phase in ("encoder", "decoder"))


def estimate_mb(model: str, compute_type: str, batch_size: int, beam_size: int = 5, *, device: str = "cuda",
                sequential: bool = False) -> float:
    """Estimated peak device memory in MiB for ``batch_size`` items (1 for a sequential run)."""
    fixed = sum(t.mb for t in memory_terms(model, compute_type, beam_size, device=device) if not t.per_item)
    return fixed + batch_size * per_item_mb(model, compute_type, beam_size, device=device, sequential=sequential)


def attention_scores_mb(model: str, compute_type: str, device: str = "cuda") -> float:
    """One encoder layer's self-attention scores for one item: heads x 1500 x 1500 values, MiB."""
    return architecture(model).encoder_heads * ENCODER_FRAMES**2 * activation_bytes(compute_type, device) / 2**20


def recommend_batch_size(
    model: str = "tiny.en",
    compute_type: str = "float16",
    memory_gb: float | None = None,
    *,
    device: str = "cuda",
    beam_size: int = 5,
    weights_loaded: bool = False,
) -> int:
    """A batch size for ``model`` from the memory model above.

    Args:
      model: a model size or a folder name containing one.
      compute_type: the CTranslate2 compute type the model runs in.
      memory_gb: free device memory in GiB; None asks NVML for the free memory of CUDA device 0
        (the NVML device it is, after ``CUDA_VISIBLE_DEVICES``; a MIG instance's own memory), and
        where NVML cannot tell, gives the CPU choice, 8.
      device: ``"cuda"`` uses the memory model; ``"cpu"`` returns the CPU choice, 8 (16 measured within
        a few percent of it, see above).
      weights_loaded: the model is already on the device, so the free memory no longer
        includes its weights and they are not subtracted again.

    >>> recommend_batch_size("large-v3", "float16", memory_gb=8.0)
    8
    >>> recommend_batch_size("large-v3", "float16", memory_gb=16.0)
    32
    """
    _check_model_name(model)
    if not isinstance(compute_type, str) or compute_type not in COMPUTE_TYPES:
        raise ConfigError(f"unknown compute type {compute_type!r}; one of: {', '.join(COMPUTE_TYPES)}")
    if device not in ("cuda", "cpu"):
        raise ConfigError(f"device must be cuda or cpu, got {device!r}")
    from whisperkit.core.config import MAX_BEAM_SIZE

    check_whole(beam_size, "beam_size", 1, MAX_BEAM_SIZE)
    if memory_gb is not None:
        check_number(memory_gb, "memory_gb", 0.0, above=True)
    return _recommend(model, compute_type, memory_gb, device, beam_size, weights_loaded)


def _recommend(model: str, compute_type: str, memory_gb, device: str, beam_size: int, weights_loaded: bool) -> int:
    if device == "cpu":
        return CPU_BATCH_SIZE
    if memory_gb is None:
        memory_gb = free_gpu_memory_gb()
        if memory_gb is None:
            return CPU_BATCH_SIZE
    if not memory_gb > 0:
        raise ConfigError(f"memory_gb must be above 0, got {memory_gb!r}")
    weights = 0.0 if weights_loaded else weights_mb(model, compute_type)
    usable_mb = memory_gb * 1024 * (1 - HEADROOM) - weights - RUNTIME_OVERHEAD_MB
    fits = math.floor(usable_mb / per_item_mb(model, compute_type, beam_size, device=device))
    if fits < 1:
        return 1
    return min(MAX_RECOMMENDED_BATCH_SIZE, 2 ** int(math.log2(fits)))


def _check_model_name(model: object) -> None:
    """A plain name must contain a known size; a folder or an "owner/name" id may be anything."""
    if not isinstance(model, (str, os.PathLike)):
        raise ModelError(f"model must be a name or a folder, got {type(model).__name__}")
    text = os.fspath(model)
    if "/" in text or os.sep in text or os.path.isdir(text):
        return
    if not names_an_architecture(text):
        raise ModelError(
            f"unknown model {text!r}; name one of the sizes {', '.join(ARCHITECTURES)} "
            "(with suffixes such as large-v3 or small.en), or a model folder"
        )


def recommend_for_model(model: Model, beam_size: int = 5) -> int:
    """``batch_size="auto"`` for a loaded :class:`whisperkit.Model` (its weights already in memory),
    from the free memory of the device that runs it (``model.device_index``)."""
    memory_gb = free_gpu_memory_gb(model.device_index) if model.device == "cuda" else None
    if memory_gb is None:
        return CPU_BATCH_SIZE
    return _recommend(model.name, model.compute_type, memory_gb, model.device, beam_size, weights_loaded=True)


def free_gpu_memory_gb(cuda_index: int = 0) -> float | None:
    """Free memory in GiB of CUDA device ``cuda_index`` (CUDA's numbering) from NVML, or None where
    NVML cannot tell. On a MIG instance it is the instance's memory, not the whole card's."""
    from whisperkit.measure.devices import model_gpu

    free_mb = model_gpu(cuda_index).memory_free_mb
    return free_mb / 1024 if free_mb == free_mb else None  # NaN: unknown


def halving_on_out_of_memory(
    attempt: Callable[[int | None], T],
    batch_size: int | None,
    *,
    device: str,
    retries: list[dict] | None = None,
    on_retry: Callable[[int], None] | None = None,
) -> T:
    """``attempt(batch_size)``, halving the batch size (down to 1) each time the device runs out of memory.

    Every batched path goes through here. Out of memory is any CUDA, cuBLAS or cuDNN allocation
    failure (:func:`whisperkit.measure.cuda.is_out_of_memory`); each one appends
    ``{"batch_size": failed size, "error": first line}`` to ``retries`` and calls
    ``on_retry(new size)`` before the next attempt. ``batch_size=None`` (a sequential run) is
    tried once. Out of memory at batch size 1 (or sequential) is a one-line :class:`OutOfMemoryError`,
    any other CUDA error a one-line :class:`DeviceError`; other errors pass through unchanged.
    """
    while True:
        try:
            return attempt(batch_size)
        except RuntimeError as error:
            if not is_cuda_error(error):
                raise
            advice = cuda_error_advice(error)
            if advice is not None:
                raise DeviceError(f"{device} failed while transcribing ({first_line(error)}); {advice}") from None
            if not is_out_of_memory(error):
                raise DeviceError(f"{device} failed while transcribing ({first_line(error)}); "
                                  "check the GPU with `whisperkit env`, or use device cpu") from None
            if batch_size is None or batch_size <= 1:
                where = "sequentially" if batch_size is None else "even at batch size 1"
                raise OutOfMemoryError(f"out of {device} memory {where} ({first_line(error)}); "
                                  "use a smaller model or compute type") from None
            if retries is not None:
                retries.append({"batch_size": batch_size, "error": first_line(error)})
            batch_size = max(1, batch_size // 2)
            if on_retry is not None:
                on_retry(batch_size)
