"""Deprecated: the Ray engine moved to :mod:`whisperkit.core.corpus.engines.ray_engine`; joining
or starting Ray is :func:`whisperkit.core.corpus.engines.ray_cluster.connect`. This module keeps
the old names working for one release."""

from __future__ import annotations

import warnings

from whisperkit.core.corpus.engines.ray_cluster import RAY_MISSING, connect, require_ray

warnings.warn("whisperkit.core.corpus.ray_engine is now whisperkit.core.corpus.engines.ray_engine "
              "(connect: whisperkit.core.corpus.engines.ray_cluster.connect); the old module goes in the next release",
              DeprecationWarning, stacklevel=2)

__all__ = ["RAY_MISSING", "connect", "require_ray"]
