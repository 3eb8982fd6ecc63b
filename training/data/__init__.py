"""Datasets: synthesis from the face model, the on-disk format, real-format loaders."""
