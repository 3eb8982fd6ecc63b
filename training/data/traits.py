"""What a synthetic person looks like, as numbers the identity embedding can learn to read.

A contrastive loss says only "these photos are one person"; the network has to discover what
makes them one. The generator knows it: skin tone, hair and its colour, brows, eye colour,
facial hair, lips. Written per photo (the ``traits`` label column), they let training regress
them from the embedding (``loss.traits``), a dense signal that says which cues carry identity
and which (light, camera, make-up, accessories) do not. Only what a photo can show is listed:
colours as log RGB (light scales them), shapes and amounts as drawn, kinds one-hot.
"""
from __future__ import annotations

import numpy as np

from siamface.training.data.scene import HAIR_KINDS, HairStyle
from siamface.training.data.texture import (C_BEARD, C_BROW, C_HAIR, C_IRIS, C_LIP, C_SKIN, FACIAL_HAIR, HAIRLINES,
                                            S_BEARD_DENSITY, S_BEARD_LENGTH, S_BEARD_NECK, S_BEARD_TOP, S_BROW_ARCH,
                                            S_BROW_ARCH_AT, S_BROW_DENSITY, S_BROW_END, S_BROW_INNER,
                                            S_BROW_OFFSET, S_BROW_OUTER, S_BROW_START, S_CHEEKS, S_CHIN,
                                            S_FRECKLES, S_GREY, S_HAIR_DENSITY, S_MOUSTACHE, S_REDNESS,
                                            S_WIDOWS_PEAK, Look)

_COLOURS = {"skin": C_SKIN, "hair": C_HAIR, "brow": C_BROW, "beard": C_BEARD, "iris": C_IRIS, "lip": C_LIP}
_SCALARS = {"redness": S_REDNESS, "freckles": S_FRECKLES, "grey": S_GREY, "hair_density": S_HAIR_DENSITY,
            "widows_peak": S_WIDOWS_PEAK, "brow_inner": S_BROW_INNER, "brow_outer": S_BROW_OUTER,
            "brow_offset": S_BROW_OFFSET, "brow_arch": S_BROW_ARCH, "brow_arch_at": S_BROW_ARCH_AT,
            "brow_start": S_BROW_START, "brow_end": S_BROW_END, "brow_density": S_BROW_DENSITY,
            "beard_density": S_BEARD_DENSITY, "beard_length": S_BEARD_LENGTH, "beard_top": S_BEARD_TOP,
            "beard_neck": S_BEARD_NECK, "moustache": S_MOUSTACHE, "chin": S_CHIN, "cheeks": S_CHEEKS}
_HAIR_STYLE = ("length", "volume", "hairline", "fringe", "curl")

TRAIT_NAMES: tuple[str, ...] = (
    ("tone",) + tuple(f"{name}_log_{c}" for name in _COLOURS for c in "rgb") + tuple(_SCALARS)
    + tuple(f"facial_hair_{k}" for k in FACIAL_HAIR) + tuple(f"hairline_{k}" for k in HAIRLINES)
    + tuple(f"hair_{k}" for k in HAIR_KINDS) + tuple(f"hair_{k}" for k in _HAIR_STYLE))


def _one_hot(value: str, kinds: tuple[str, ...]) -> list[float]:
    return [float(value == k) for k in kinds]


def identity_traits(look: Look, hair: HairStyle) -> np.ndarray:
    """(len(TRAIT_NAMES),) float32: one person's visible traits, in TRAIT_NAMES order."""
    logs = np.log(np.maximum(look.colours[list(_COLOURS.values())], 1e-3)).reshape(-1)
    values = ([look.tone] + logs.tolist() + look.scalars[list(_SCALARS.values())].tolist()
              + _one_hot(look.facial_hair, FACIAL_HAIR) + _one_hot(look.hairline, HAIRLINES)
              + _one_hot(hair.kind, HAIR_KINDS) + [getattr(hair, k) for k in _HAIR_STYLE])
    return np.asarray(values, np.float32)
