"""Training-batch sampling: Siamese pairs (the paper's baseline) and P identities x K photos.

Both are deterministic for (seed, epoch); a whole epoch is drawn up front, so the input
pipeline does no Python work per sample. A photo of unknown pose (NaN yaw, e.g. an imported
real photo) counts as frontal for the pose preference.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siamface.edge_runtime.errors import SiamfaceError


class _Groups:
    """The images of each identity, found once (identities sorted, members in image order)."""

    def __init__(self, identities: np.ndarray):
        order = np.argsort(identities, kind="stable")
        ids, starts, counts = np.unique(identities[order], return_index=True, return_counts=True)
        self.order, self.starts, self.counts = order, starts, counts
        self.of_image = np.searchsorted(ids, identities)  # group index of each image

    def __len__(self) -> int:
        return len(self.counts)

    def members(self, group: int) -> np.ndarray:
        return self.order[self.starts[group]: self.starts[group] + self.counts[group]]


def _pose_weights(yaw: np.ndarray, reference: np.ndarray, preference: float) -> np.ndarray:
    """(|yaw difference to the nearest reference| + 10)^preference: favours unseen poses."""
    gap = np.abs(yaw[:, None] - reference[None, :]).min(axis=1)
    return (gap + 10.0) ** preference


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
        self.yaw_deg = np.nan_to_num(np.asarray(self.yaw_deg, np.float64))
        self._groups = _Groups(self.identities)
        if len(self._groups) < 2:
            raise SiamfaceError(f"pair sampling needs at least two identities, the data has {len(self._groups)}")
        if self._groups.counts.max() < 2:
            raise SiamfaceError("pair sampling needs at least one identity with two or more images")

    def epoch(self, epoch: int, n_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs for one epoch: every image is an anchor once (shuffled) unless n_pairs is given."""
        rng = np.random.default_rng([self.seed, epoch])
        n = len(self.identities)
        anchors = rng.permutation(n) if n_pairs is None else rng.integers(0, n, n_pairs)
        same = rng.uniform(size=len(anchors)) < self.p_same
        same &= self._groups.counts[self._groups.of_image[anchors]] >= 2
        partners = np.empty(len(anchors), np.int64)
        partners[same] = self._positives(anchors[same], rng)
        partners[~same] = self._negatives(anchors[~same], rng)
        return anchors, partners, same.astype(np.float32)

    def _positives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Another image of the same identity, drawn with weight (|yaw difference| + 10)^pref."""
        out = np.empty(len(anchors), np.int64)
        for k, a in enumerate(anchors):
            members = self._groups.members(self._groups.of_image[a])
            members = members[members != a]
            w = _pose_weights(self.yaw_deg[members], self.yaw_deg[a:a + 1], self.pose_preference)
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


@dataclass
class PKSampler:
    """Batches of P identities x K photos each, so batch losses see many positives and negatives.

    An epoch shuffles the identities that have two or more photos (a single photo has no
    positive) and cuts them into groups of P. Each identity gives K photos, spread in pose: the
    first uniformly, each next one with weight (|yaw gap to those chosen| + 10)^pose_preference.
    An identity with fewer than K photos repeats its photos (in shuffled order) to fill K
    slots; augmentation makes the repeats differ photometrically only.

    A batch is photo-major: the first photo of each of the P identities, then the second, ...
    so the model can run it as K slices of P different people (``build_batch_model``).
    """

    identities: np.ndarray       # (N,) int identity per image
    yaw_deg: np.ndarray          # (N,) yaw, for pose-diverse choices
    n_identities: int = 16       # P
    n_images: int = 4            # K
    seed: int = 0
    pose_preference: float = 1.0

    def __post_init__(self) -> None:
        self.identities = np.asarray(self.identities, np.int64)
        self.yaw_deg = np.nan_to_num(np.asarray(self.yaw_deg, np.float64))
        if self.n_identities < 2 or self.n_images < 2:
            raise SiamfaceError(f"P x K sampling needs P >= 2 and K >= 2, got {self.n_identities} x {self.n_images}: "
                                f"set pk_identities and pk_images")
        self._groups = _Groups(self.identities)
        self._eligible = np.flatnonzero(self._groups.counts >= 2)
        if len(self._eligible) < self.n_identities:
            raise SiamfaceError(f"P x K sampling needs P = {self.n_identities} identities with two or more photos, "
                                f"the data has {len(self._eligible)}: lower pk_identities or add photos")

    @property
    def batch_size(self) -> int:
        return self.n_identities * self.n_images

    @property
    def steps_per_epoch(self) -> int:
        return len(self._eligible) // self.n_identities

    @property
    def short_identities(self) -> int:
        """Identities used with repeated photos (fewer than K, at least 2)."""
        return int((self._groups.counts[self._eligible] < self.n_images).sum())

    def epoch(self, epoch: int) -> np.ndarray:
        """(steps_per_epoch * K * P,) image indices; batch after batch, each photo-major (K x P)."""
        rng = np.random.default_rng([self.seed, epoch, 1])
        groups = rng.permutation(self._eligible)[: self.steps_per_epoch * self.n_identities]
        picks = np.stack([self._pick(g, rng) for g in groups])         # (steps * P, K)
        return picks.reshape(self.steps_per_epoch, self.n_identities, self.n_images).transpose(0, 2, 1).ravel()

    def _pick(self, group: int, rng: np.random.Generator) -> np.ndarray:
        members = rng.permutation(self._groups.members(group))
        k = self.n_images
        if len(members) <= k:
            return np.resize(members, k)
        chosen = [0]
        for _ in range(k - 1):
            rest = np.setdiff1d(np.arange(len(members)), chosen)
            w = _pose_weights(self.yaw_deg[members[rest]], self.yaw_deg[members[chosen]], self.pose_preference)
            chosen.append(int(rest[rng.choice(len(rest), p=w / w.sum())]))
        return members[chosen]
