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

    With ``lookalikes`` (each identity's nearest identities by what the labels say they look like,
    ``lookalike_table``) and ``lookalike_group`` = G > 1, the P people come as P / G groups: a
    person and G - 1 of their look-alikes, so every person meets negatives that differ only in
    fine cues (doppelganger mining, Smirnov et al. 2017), where random people differ mostly in
    skin tone and hair, which the embedding learns first.
    """

    identities: np.ndarray       # (N,) int identity per image
    yaw_deg: np.ndarray          # (N,) yaw, for pose-diverse choices
    n_identities: int = 16       # P
    n_images: int = 4            # K
    seed: int = 0
    pose_preference: float = 1.0
    lookalikes: np.ndarray | None = None  # (identities, M) neighbour identity indices (sorted ids' order), -1 pads
    lookalike_group: int = 0              # G: people per look-alike group; 0 or 1: people drawn at random

    def __post_init__(self) -> None:
        self.identities = np.asarray(self.identities, np.int64)
        self.yaw_deg = np.nan_to_num(np.asarray(self.yaw_deg, np.float64))
        if self.lookalike_group > 1 and (self.lookalikes is None or self.n_identities % self.lookalike_group):
            raise SiamfaceError(f"pk_lookalikes={self.lookalike_group} needs look-alike labels (synthetic traits and "
                                f"identity parameters) and must divide P = {self.n_identities}")
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
        if self.lookalike_group > 1:
            groups = self._with_lookalikes(groups, rng)
        picks = np.stack([self._pick(g, rng) for g in groups])         # (steps * P, K)
        return picks.reshape(self.steps_per_epoch, self.n_identities, self.n_images).transpose(0, 2, 1).ravel()

    def _with_lookalikes(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each batch's P people as P / G anchors (the epoch's order) and, for each, G - 1 of their
        look-alikes drawn at random, none twice in a batch (a random person where the table runs out)."""
        g, p = self.lookalike_group, self.n_identities
        eligible = np.zeros(len(self._groups), bool)
        eligible[self._eligible] = True
        out = []
        for batch in groups.reshape(-1, p):
            chosen: list[int] = []
            for anchor in batch[: p // g]:
                chosen.append(int(anchor))
                near = [int(n) for n in rng.permutation(self.lookalikes[anchor]) if n >= 0 and eligible[n]]
                near = [n for n in near if n not in chosen][: g - 1]
                while len(near) < g - 1:
                    n = int(rng.choice(self._eligible))
                    if n not in chosen and n not in near:
                        near.append(n)
                chosen += near
            out.append(chosen)
        return np.asarray(out, np.int64).ravel()

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


def lookalike_table(identities: np.ndarray, looks: np.ndarray, neighbours: int = 32, block: int = 2048) -> np.ndarray:
    """(identities, ``neighbours``) each identity's nearest other identities (indices in sorted-identity
    order, as PKSampler's groups), by Euclidean distance between their mean ``looks`` rows (N, D); an
    identity whose looks are unknown (NaN, an imported photo) has none (-1)."""
    groups = _Groups(np.asarray(identities, np.int64))
    sums = np.zeros((len(groups), looks.shape[1]))
    np.add.at(sums, groups.of_image, np.asarray(looks, np.float64))
    x = sums / groups.counts[:, None]
    known = np.isfinite(x).all(axis=1)
    table = np.full((len(groups), neighbours), -1, np.int64)
    if known.sum() < 2:
        return table
    z = x[known]
    idx = np.flatnonzero(known)
    k = min(neighbours, len(z) - 1)
    sq = (z * z).sum(1)
    for start in range(0, len(z), block):  # blocks of the distance matrix: 50,000 people would be 20 GB at once
        d = sq[start:start + block, None] - 2.0 * z[start:start + block] @ z.T + sq[None, :]
        d[np.arange(len(d)), start + np.arange(len(d))] = np.inf
        near = np.argpartition(d, k - 1, axis=1)[:, :k]
        table[idx[start:start + block], :k] = idx[near]
    return table
