"""The whole pipeline as resumable stages: base, data, tuning, training, serving, smoke test."""
