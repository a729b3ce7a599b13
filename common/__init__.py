"""Shared layer for the paper re-implementations: metrics, data, set-up, training, results, plots."""
