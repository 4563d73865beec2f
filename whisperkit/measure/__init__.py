"""Measurement: NVML, the utilization sampler, the environment."""
