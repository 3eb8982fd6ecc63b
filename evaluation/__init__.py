"""Evaluation: metrics (numpy only) and reports for landmarks, pose, 3D shape and identity."""
