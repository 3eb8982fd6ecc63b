"""Evaluation's name for scoring, which lives in the base layer (``edge_runtime.scoring``) so that
training's validation uses the same definition without depending on evaluation."""
from siamface.edge_runtime.scoring import *  # noqa: F401,F403
