"""The identity numbers on real SQLite galleries: templates, scores, ranking and thresholds
(files, names, caching and concurrency are in test_gallery.py)."""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.edge_runtime.identity import Gallery, Identification, as_embeddings, cosine_threshold

from test_gallery import HASH, gallery, path  # noqa: F401  (the gallery tests' fixtures, one definition)


# -- numbers --------------------------------------------------------------------------------

def test_template_is_normalised_mean_of_normalised_embeddings(gallery):
    # [2,0,0] and [0,3,0] normalise to e1 and e2: template (e1 + e2) / sqrt(2)
    gallery.enroll("alice", np.array([[2.0, 0, 0], [0, 3.0, 0]]))
    gallery.enroll("bob", [0.0, 0.0, 5.0])
    v = gallery.verify(np.array([1.0, 0, 0]), "alice")
    assert v.name == "alice" and v.threshold == 0.5
    assert v.score == pytest.approx(1 / math.sqrt(2), abs=1e-7) and v.match
    v = gallery.verify(np.array([1.0, 0, 0]), "bob")
    assert v.score == pytest.approx(0.0, abs=1e-7) and not v.match


def test_identify_ranks_by_cosine_and_says_unknown_below_threshold(gallery):
    gallery.enroll("alice", np.array([[2.0, 0, 0], [0, 3.0, 0]]))
    gallery.enroll("bob", [0.0, 0.0, 5.0])
    gallery.enroll("carol", [0.0, -1.0, 0.0])
    # probe [3,4,0]/5: alice (0.6 + 0.8)/sqrt(2), bob 0, carol -0.8
    ident = gallery.identify(np.array([3.0, 4.0, 0.0]))
    assert [n for n, _ in ident.candidates] == ["alice", "bob", "carol"]
    np.testing.assert_allclose([s for _, s in ident.candidates], [1.4 / math.sqrt(2), 0.0, -0.8], atol=1e-7)
    assert ident.best == "alice" and ident.threshold == 0.5
    assert gallery.identify(np.array([3.0, 4.0, 0.0]), k=2).candidates[1][0] == "bob"
    # probe -e3: alice 0, carol 0 (ties keep name order), bob -1; top score 0 < 0.5 -> unknown
    ident = gallery.identify(np.array([0.0, 0.0, -2.0]), k=1)
    assert ident.candidates == [("alice", pytest.approx(0.0, abs=1e-7))]
    assert ident.best is None


def test_identify_on_empty_gallery(gallery):
    assert gallery.identify(np.ones(8)) == Identification([], None, 0.5)


def test_threshold_boundary_is_a_match(path):
    # template e1, probe [3,4]/5: cosine exactly 0.6 in float64
    at = Gallery(path, HASH, threshold=0.6, create=True)
    at.enroll("alice", [1.0, 0.0])
    v = at.verify([3.0, 4.0], "alice")
    assert v.score == 0.6 and v.match
    assert at.identify([3.0, 4.0]).best == "alice"
    above = Gallery(path, HASH, threshold=float(np.nextafter(0.6, 1.0)))
    assert not above.verify([3.0, 4.0], "alice").match
    assert above.identify([3.0, 4.0]).best is None


def test_threshold_is_a_cosine_in_minus_one_to_one(path):
    """The gallery takes exactly the thresholds bundles and --threshold take (cosine_threshold): -1
    matches everyone, 1 only an identical direction; anything outside [-1, 1] or non-finite is refused."""
    Gallery(path, HASH, threshold=0.5, create=True).enroll("alice", [1.0, 0.0])
    assert Gallery(path, HASH, threshold=-1).identify([-1.0, 0.0]).best == "alice"
    everyone = Gallery(path, HASH, threshold=-1.0).verify([-1.0, 0.0], "alice")
    assert everyone.score == -1.0 and everyone.match
    assert Gallery(path, HASH, threshold=1.0).verify([2.0, 0.0], "alice").match
    assert not Gallery(path, HASH, threshold=1.0).verify([1.0, 1e-3], "alice").match
    for bad in (float(np.nextafter(1.0, 2.0)), float(np.nextafter(-1.0, -2.0)), math.nan, math.inf, "x"):
        with pytest.raises(SiamfaceError, match=r"gallery .*gallery.db: threshold .* is not a cosine in \[-1, 1\]"):
            Gallery(path, HASH, threshold=bad)
        with pytest.raises(SiamfaceError, match="is not a cosine"):
            cosine_threshold(bad, "here")


def test_update_merges_as_running_mean_and_plain_enroll_replaces(gallery):
    first = gallery.enroll("alice", [1.0, 0.0, 0.0])
    merged = gallery.enroll("alice", np.array([[0.0, 2.0, 0.0], [0.0, 7.0, 0.0]]), update=True)
    assert merged.count == 3 and merged.enrolled_at == first.enrolled_at
    # mean (e1 + 2 e2) / 3 -> template [1, 2, 0] / sqrt(5)
    assert gallery.verify([1.0, 0, 0], "alice").score == pytest.approx(1 / math.sqrt(5), abs=1e-6)
    # the stored count makes a second merge exact: (e1 + 2 e2 + e3) / 4 -> [1, 2, 1] / sqrt(6)
    assert gallery.enroll("alice", [0.0, 0.0, 9.0], update=True).count == 4
    assert gallery.verify([0, 0, 1.0], "alice").score == pytest.approx(1 / math.sqrt(6), abs=1e-6)
    assert gallery.verify([0, 1.0, 0], "alice").score == pytest.approx(2 / math.sqrt(6), abs=1e-6)
    replaced = gallery.enroll("alice", [0.0, 0.0, 1.0])
    assert replaced.count == 1 and replaced.enrolled_at > first.enrolled_at
    assert gallery.verify([0, 0, 1.0], "alice").score == pytest.approx(1.0)
    # update of a new name is a plain enrolment
    assert gallery.enroll("bob", [1.0, 0, 0], update=True).count == 1


def test_faces_with_an_embedding_attribute_are_accepted(gallery):
    faces = [SimpleNamespace(embedding=np.array([2.0, 0.0])), SimpleNamespace(embedding=np.array([0.0, 2.0]))]
    assert as_embeddings(faces).shape == (2, 2)
    assert gallery.enroll("alice", faces).count == 2
    assert gallery.verify(faces[0], "alice").score == pytest.approx(1 / math.sqrt(2), abs=1e-7)
    assert gallery.identify(faces[1]).best == "alice"


def test_list_names_remove(gallery):
    before = time.time()
    gallery.enroll("bob", np.eye(4)[:3])
    gallery.enroll("alice", np.eye(4)[3])
    after = time.time()
    assert gallery.names() == ["alice", "bob"]
    entries = gallery.list()
    assert [(e.name, e.count) for e in entries] == [("alice", 1), ("bob", 3)]
    assert all(before <= e.enrolled_at.timestamp() <= after for e in entries)
    gallery.remove("bob")
    assert gallery.names() == ["alice"]
    with pytest.raises(SiamfaceError, match="'bob' is not enrolled.*siamface gallery list"):
        gallery.remove("bob")
    with pytest.raises(SiamfaceError, match="'bob' is not enrolled.*gallery.db"):
        gallery.verify(np.eye(4)[0], "bob")


def test_bad_inputs_are_refused(gallery):
    gallery.enroll("alice", [1.0, 0.0, 0.0])
    with pytest.raises(SiamfaceError, match="holds 3-d embeddings, got 4-d"):
        gallery.enroll("bob", [1.0, 0.0, 0.0, 0.0])
    with pytest.raises(SiamfaceError, match="holds 3-d embeddings, got 2-d"):
        gallery.verify([1.0, 0.0], "alice")
    with pytest.raises(SiamfaceError, match="holds 3-d embeddings, got 2-d"):
        gallery.identify([1.0, 0.0])
    with pytest.raises(SiamfaceError, match="all zeros"):
        gallery.enroll("bob", np.zeros(3))
    with pytest.raises(SiamfaceError, match="cancel out"):
        gallery.enroll("bob", np.array([[1.0, 0, 0], [-1.0, 0, 0]]))
    with pytest.raises(SiamfaceError, match="expected one embedding"):
        gallery.identify(np.eye(3))
    with pytest.raises(SiamfaceError, match="non-empty string"):
        gallery.enroll(" ", [1.0, 0, 0])
    with pytest.raises(SiamfaceError, match="shape"):
        gallery.enroll("bob", np.zeros((2, 2, 2)))
    with pytest.raises(SiamfaceError, match="must be numbers"):
        gallery.enroll("bob", [[1.0, 0.0], [1.0]])
    with pytest.raises(SiamfaceError, match=r"got \(0,\)"):
        gallery.enroll("bob", [])
    with pytest.raises(SiamfaceError, match="threshold"):
        Gallery(gallery.path, HASH, threshold=1.5)
    assert gallery.names() == ["alice"]
