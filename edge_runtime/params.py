"""The 3DMM parameter vector layout and its whitening, recorded in every artifact.

A parameter vector is ``12 pose values (3x4 camera [sR | t], row-major) + K identity
coefficients + E expression coefficients``; networks regress it whitened,
``(p - mean) / std``, with statistics taken over a training set.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import SiamfaceError

N_POSE = 12


@dataclass(frozen=True)
class ParamLayout:
    """Sizes of the three blocks of a parameter vector."""

    n_id: int = 100
    n_exp: int = 53
    n_pose: int = N_POSE

    @property
    def size(self) -> int:
        return self.n_pose + self.n_id + self.n_exp

    @property
    def pose(self) -> slice:
        return slice(0, self.n_pose)

    @property
    def identity(self) -> slice:
        return slice(self.n_pose, self.n_pose + self.n_id)

    @property
    def expression(self) -> slice:
        return slice(self.n_pose + self.n_id, self.size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ParamLayout":
        return cls(n_id=int(d["n_id"]), n_exp=int(d["n_exp"]), n_pose=int(d.get("n_pose", N_POSE)))

    def split(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(..., size) -> camera (..., 3, 4), identity (..., K), expression (..., E)."""
        params = np.asarray(params)
        if params.shape[-1] != self.size:
            raise SiamfaceError(f"parameter vector has {params.shape[-1]} values, layout expects {self.size}")
        camera = params[..., self.pose].reshape(params.shape[:-1] + (3, 4))
        return camera, params[..., self.identity], params[..., self.expression]

    def join(self, camera: np.ndarray, id_coeffs: np.ndarray, exp_coeffs: np.ndarray) -> np.ndarray:
        camera = np.asarray(camera)
        flat = camera.reshape(camera.shape[:-2] + (self.n_pose,))
        return np.concatenate([flat, id_coeffs, exp_coeffs], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class Whitening:
    """Per-parameter mean and std; std is floored so constant parameters stay finite."""

    mean: np.ndarray
    std: np.ndarray

    MIN_STD = 1e-6

    @classmethod
    def fit(cls, params: np.ndarray) -> "Whitening":
        params = np.asarray(params, dtype=np.float64)
        std = np.maximum(params.std(axis=0), cls.MIN_STD)
        return cls(params.mean(axis=0).astype(np.float32), std.astype(np.float32))

    def whiten(self, params: np.ndarray) -> np.ndarray:
        return ((np.asarray(params) - self.mean) / self.std).astype(np.float32)

    def unwhiten(self, z: np.ndarray) -> np.ndarray:
        return (np.asarray(z) * self.std + self.mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}

    @classmethod
    def from_dict(cls, d: dict) -> "Whitening":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))
