"""Leaves the core may import: files, locks, one-line errors, speed, the batch thread, baselines."""
