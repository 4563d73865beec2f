"""The memory model of core/batching.py against every published GPU memory figure found.

Each row: faster-whisper's peak NVML ``used`` (device-wide, MiB) transcribing 13 minutes of audio
with beam 5. Sources:
- faster-whisper README at v1.1.0 (commit 97a4785, RTX 3070 Ti 8 GB, CUDA 12.4), large-v2;
- faster-whisper README before v1.1.0 (for example commit a6f8fba, Tesla V100S, CUDA 11.7.1), large-v2;
- faster-whisper issue #1030 (a user, RTX 2080 Ti 11 GB): large-v3, distil-large-v3, large-v3-turbo.
A row without a batch size is sequential (``WhisperModel.transcribe``, previous text as prompt).
"""

from __future__ import annotations

import pytest

import whisperkit as wk
from whisperkit.core import batching

PUBLISHED = [
    # source, model, compute type, batch size (None: sequential), MB
    ("README v1.1.0, RTX 3070 Ti", "large-v2", "float16", 8, 6090),
    ("README v1.1.0, RTX 3070 Ti", "large-v2", "float16", None, 4525),
    ("README v1.1.0, RTX 3070 Ti", "large-v2", "int8", 8, 4500),
    ("README v1.1.0, RTX 3070 Ti", "large-v2", "int8", None, 2926),
    ("README before 1.1.0, V100S", "large-v2", "float16", None, 4755),
    ("README before 1.1.0, V100S", "large-v2", "int8", None, 3091),
    ("issue #1030, RTX 2080 Ti", "large-v3", "float16", None, 4521),
    ("issue #1030, RTX 2080 Ti", "large-v3", "int8", None, 2953),
    ("issue #1030, RTX 2080 Ti", "distil-large-v3", "float16", None, 2409),
    ("issue #1030, RTX 2080 Ti", "distil-large-v3", "int8", None, 1481),
    ("issue #1030, RTX 2080 Ti", "large-v3-turbo", "float16", None, 2537),
    ("issue #1030, RTX 2080 Ti", "large-v3-turbo", "int8", None, 1545),
]
#: how far an estimate may be from a published figure (the figures are device-wide and sampled
#: every 0.5 s; the V100S rows are from ctranslate2 3.x)
TOLERANCE = 0.15


@pytest.mark.parametrize("source, model, compute_type, batch_size, published_mb", PUBLISHED)
def test_the_estimate_is_within_15_percent_of_every_published_figure(source, model, compute_type, batch_size,
                                                                       published_mb):
    estimate = batching.estimate_mb(model, compute_type, batch_size or 1, beam_size=5, sequential=batch_size is None)
    assert estimate == pytest.approx(published_mb, rel=TOLERANCE), (source, round(estimate))


def test_int8_on_a_gpu_is_sized_as_int8_float16_so_it_never_gets_a_smaller_batch():
    for memory_gb in (4, 6, 8, 12, 16, 24, 40, 80):
        for model in ("large-v3", "turbo", "medium", "small", "distil-large-v3"):
            assert wk.recommend_batch_size(model, "int8", memory_gb=memory_gb) >= wk.recommend_batch_size(
                model, "int8_float16", memory_gb=memory_gb), (model, memory_gb)
    assert wk.recommend_batch_size("large-v3", "int8", memory_gb=8) >= wk.recommend_batch_size("large-v3", "int8_float16", memory_gb=8)
    # the same activations (2 bytes), int8's weights the smaller
    assert batching.per_item_mb("large-v3", "int8") == batching.per_item_mb("large-v3", "float16")
    assert batching.per_item_mb("large-v3", "float32") == pytest.approx(2 * batching.per_item_mb("large-v3", "float16"))
    assert batching.per_item_mb("large-v3", "int8_float32") == batching.per_item_mb("large-v3", "float32")
    # on the CPU int8 runs as int8_float32: 4-byte activations
    assert batching.per_item_mb("small", "int8", device="cpu") == batching.per_item_mb("small", "float32")


def test_exact_terms_are_not_scaled():
    terms = {t.name: t for t in batching.memory_terms("large-v2", "float16", beam_size=5)}
    # 2 (keys, values) x 32 decoder layers x 1500 positions x 1280 wide x 2 bytes, once per item, not per beam
    cross = terms["cross-attention keys and values"]
    assert cross.exact and cross.per_item and cross.mb == 2 * 32 * 1500 * 1280 * 2 / 2**20
    assert {t.mb for t in batching.memory_terms("large-v2", "float16", beam_size=1)
            if t.name == cross.name} == {cross.mb}  # the beam does not copy it
    scores = terms["encoder attention scores"]
    assert scores.exact and scores.mb == 20 * 1500 * 1500 * 2 / 2**20
    cache = terms["self-attention cache"]
    assert cache.mb == 2 * 32 * 5 * batching.TYPICAL_TOKENS * 1280 * 2 / 2**20
    assert not terms["runtime overhead"].exact and not terms["encoder layer activations"].exact
    # an item costs the larger peak: the encoder's scores are freed before decoding
    encoder = sum(t.mb for t in terms.values() if t.phase == "encoder")
    decoder = sum(t.mb for t in terms.values() if t.phase == "decoder")
    assert batching.per_item_mb("large-v2", "float16") == max(encoder, decoder) == decoder
    turbo = batching.memory_terms("turbo", "float16")
    assert batching.per_item_mb("turbo", "float16") == sum(t.mb for t in turbo if t.phase == "encoder")


def test_architectures_from_the_model_cards():
    assert batching.architecture("distil-small.en").decoder_layers == 4
    assert batching.architecture("distil-medium.en").decoder_layers == 2
    assert batching.architecture("distil-large-v3").decoder_layers == 2
    assert batching.architecture("large-v3-turbo").decoder_layers == 4
    assert batching.architecture("large-v2").decoder_layers == 32
