"""Transcription: configuration, audio, models, batch sizes and the sequential and batched runs."""
