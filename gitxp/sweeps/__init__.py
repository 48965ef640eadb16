"""Sweeps: spec files, the cross-process queue and the runner."""
