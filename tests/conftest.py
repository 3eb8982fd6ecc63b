"""Shared fixtures: the real face model (loaded once) and small helpers."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def face_model():
    from edge_runtime.morphable_model import load_face_model

    return load_face_model()
