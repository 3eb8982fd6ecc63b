"""siamface: one face photo to a 3D face and an identity.

Every first-party package is imported as ``siamface.<package>`` (edge_runtime, training, export,
evaluation, cli), so an install puts one name in site-packages. A wheel places the packages inside
this folder; a clone keeps them as top-level folders beside it (the layout users edit), and this
package's search path reaches them there.
"""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
if not (_HERE / "edge_runtime").is_dir() and (_HERE.parent / "edge_runtime").is_dir():
    __path__.append(str(_HERE.parent))  # a clone: siamface.training is ../training
