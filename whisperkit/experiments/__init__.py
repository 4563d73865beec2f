"""Experiments: runs, comparisons, sweeps, their metrics and their storage."""
