"""Siamese pair sampling: same-identity pairs with probability p_same, preferring different poses.

Deterministic for (seed, epoch); a whole epoch of pairs is drawn up front, so the input
pipeline does no Python work per sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import SiamfaceError


@dataclass
class PairSampler:
    """Draws (a, b, same) index pairs over a labelled set of images."""

    identities: np.ndarray       # (N,) int identity per image
    yaw_deg: np.ndarray          # (N,) ground-truth yaw, to prefer pose-diverse positives
    p_same: float = 0.4
    seed: int = 0
    pose_preference: float = 1.0  # 0: positives uniform; larger: favour large yaw differences

    def __post_init__(self) -> None:
        self.identities = np.asarray(self.identities, np.int64)
        self.yaw_deg = np.asarray(self.yaw_deg, np.float64)
        order = np.argsort(self.identities, kind="stable")
        ids, starts, counts = np.unique(self.identities[order], return_index=True, return_counts=True)
        if len(ids) < 2:
            raise SiamfaceError(f"pair sampling needs at least two identities, the data has {len(ids)}")
        if counts.max() < 2:
            raise SiamfaceError("pair sampling needs at least one identity with two or more images")
        self._order, self._starts, self._counts = order, starts, counts
        self._group = np.searchsorted(ids, self.identities)  # group index of each image

    def epoch(self, epoch: int, n_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs for one epoch: every image is an anchor once (shuffled) unless n_pairs is given."""
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.identities)
        anchors = rng.permutation(n) if n_pairs is None else rng.integers(0, n, n_pairs)
        same = rng.uniform(size=len(anchors)) < self.p_same
        same &= self._counts[self._group[anchors]] >= 2
        partners = np.empty(len(anchors), np.int64)
        partners[same] = self._positives(anchors[same], rng)
        partners[~same] = self._negatives(anchors[~same], rng)
        return anchors, partners, same.astype(np.float32)

    def _positives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Another image of the same identity, drawn with weight (|yaw difference| + 10)^pref."""
        out = np.empty(len(anchors), np.int64)
        for k, a in enumerate(anchors):
            g = self._group[a]
            members = self._order[self._starts[g]: self._starts[g] + self._counts[g]]
            members = members[members != a]
            w = (np.abs(self.yaw_deg[members] - self.yaw_deg[a]) + 10.0) ** self.pose_preference
            out[k] = members[rng.choice(len(members), p=w / w.sum())]
        return out

    def _negatives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly drawn image of another identity (rejection on the rare collisions)."""
        out = rng.integers(0, len(self.identities), len(anchors))
        clash = self.identities[out] == self.identities[anchors]
        while clash.any():
            out[clash] = rng.integers(0, len(self.identities), int(clash.sum()))
            clash = self.identities[out] == self.identities[anchors]
        return out
