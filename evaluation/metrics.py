"""Evaluation's name for the metrics, which live in the base layer (``edge_runtime.metrics``) so that
training, export and the device use the same definitions without depending on evaluation."""
from siamface.edge_runtime.metrics import *  # noqa: F401,F403
