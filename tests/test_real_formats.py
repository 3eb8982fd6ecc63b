"""Real-format loaders on fixtures written in the datasets' exact layouts (savemat, imwrite)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import scipy.io

from siamface.edge_runtime.camera import CameraPose, compose_camera
from siamface.edge_runtime.errors import SiamfaceError
from siamface.evaluation.pair_files import Pair, read_lfw_pairs, read_pairs_csv
from siamface.training.data.real_formats import (AFLW2000Loader, IdentityFolderLoader, PtsFolderLoader, SampleError,
                                        W300LPLoader, pose_from_3ddfa, read_pts, split_by_identity)

RNG = np.random.default_rng(7)


def write_image(path, value=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = RNG.integers(0, 255, (200, 200, 3), dtype=np.uint8) if value is None else np.full((200, 200, 3), value, np.uint8)
    assert cv2.imwrite(str(path), image)
    return image


def landmarks2d(offset=0.0):
    return np.stack([np.linspace(40, 160, 68), np.linspace(50, 150, 68)[::-1]], axis=1) + offset


def pose_para(pitch=0.1, yaw=-0.4, roll=0.05):
    return np.array([[pitch, yaw, roll, 100.0, 90.0, 0.0, 0.0012]])


def write_300wlp_mat(path, pt2d, pose=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {
        "Pose_Para": pose_para() if pose is None else pose, "Shape_Para": RNG.normal(0, 1e4, (199, 1)),
        "Exp_Para": RNG.normal(0, 1, (29, 1)), "Tex_Para": np.zeros((199, 1)), "Illum_Para": np.zeros((1, 10)),
        "Color_Para": np.zeros((1, 7)), "pt2d": pt2d, "roi": np.array([[30.0, 40.0, 170.0, 160.0]])})


@pytest.fixture
def w300lp(tmp_path):
    """AFW with two pose copies of one photo and another photo, AFW_Flip, HELEN with bad samples."""
    root = tmp_path / "300W_LP"
    for subset, name, offset in [("AFW", "AFW_134212_1_0", 0), ("AFW", "AFW_134212_1_1", 1), ("AFW", "AFW_5_2_0", 2),
                                 ("AFW_Flip", "AFW_134212_1_0", 3), ("HELEN", "HELEN_10_1_0", 4)]:
        write_image(root / subset / f"{name}.jpg")
        write_300wlp_mat(root / subset / f"{name}.mat", landmarks2d(offset).T)
    (root / "landmarks" / "AFW").mkdir(parents=True)
    scipy.io.savemat(str(root / "landmarks" / "AFW" / "AFW_134212_1_1_pts.mat"),
                     {"pts_2d": landmarks2d(10), "pts_3d": landmarks2d(20)})
    write_image(root / "HELEN" / "HELEN_11_1_0.jpg")                       # no .mat
    write_image(root / "HELEN" / "HELEN_12_1_0.jpg")
    write_300wlp_mat(root / "HELEN" / "HELEN_12_1_0.mat", landmarks2d().T, pose=np.zeros((1, 6)))
    (root / "HELEN" / "HELEN_13_1_0.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    write_300wlp_mat(root / "HELEN" / "HELEN_13_1_0.mat", landmarks2d().T)
    write_image(root / "HELEN" / "HELEN_14_1_0.jpg")
    write_300wlp_mat(root / "HELEN" / "HELEN_14_1_0.mat", landmarks2d())   # pt2d transposed: (68, 2)
    write_image(root / "LFPW" / "LFPW_image_test_0001_0.jpg")
    write_300wlp_mat(root / "LFPW" / "LFPW_image_test_0001_0.mat", landmarks2d().T)
    (root / "landmarks" / "LFPW").mkdir(parents=True)
    scipy.io.savemat(str(root / "landmarks" / "LFPW" / "LFPW_image_test_0001_0_pts.mat"),
                     {"pts_2d": landmarks2d(), "pts_3d": landmarks2d().T})   # wrong shape (2, 68)
    return root


def test_300wlp_loads_identities_landmarks_and_pose(w300lp):
    loader = W300LPLoader(w300lp)
    samples = list(loader)
    names = [s.image_path.name for s in samples]
    assert names == ["AFW_134212_1_0.jpg", "AFW_134212_1_1.jpg", "AFW_5_2_0.jpg", "AFW_134212_1_0.jpg", "HELEN_10_1_0.jpg"]
    assert [s.identity for s in samples] == ["AFW/AFW_134212_1", "AFW/AFW_134212_1", "AFW/AFW_5_2",
                                             "AFW_Flip/AFW_134212_1", "HELEN/HELEN_10_1"]
    np.testing.assert_allclose(samples[0].landmarks, landmarks2d(0))       # pt2d (2, 68) transposed
    np.testing.assert_allclose(samples[1].landmarks, landmarks2d(20))      # landmarks/<subset>/..._pts.mat pts_3d
    np.testing.assert_allclose(samples[3].landmarks, landmarks2d(3))       # the flip folder's own .mat
    assert all(s.source == "300W-LP" and not s.has_3d and s.image.shape == (200, 200, 3) for s in samples)
    np.testing.assert_allclose(samples[0].pose_deg, pose_from_3ddfa(0.1, -0.4, 0.05))


def test_300wlp_skips_bad_samples_by_path(w300lp):
    loader = W300LPLoader(w300lp)
    assert len(loader) == 9  # listed (with a .mat and a valid name); HELEN_11 fails at listing
    list(loader)
    reasons = {p.relative_to(w300lp).as_posix(): r for p, r in loader.skipped}
    assert loader.n_skipped == 5
    assert reasons["HELEN/HELEN_11_1_0.jpg"] == "missing HELEN_11_1_0.mat"
    assert reasons["HELEN/HELEN_12_1_0.mat"] == "key Pose_Para has shape (1, 6), expected (1, 7)"
    assert reasons["HELEN/HELEN_13_1_0.jpg"] == "unreadable image"
    assert reasons["HELEN/HELEN_14_1_0.mat"] == "key pt2d has shape (68, 2), expected (2, 68)"
    assert reasons["landmarks/LFPW/LFPW_image_test_0001_0_pts.mat"] == "key pts_3d has shape (2, 68), expected (68, 2)"
    list(loader)
    assert loader.n_skipped == 5  # a second pass does not double-count


@pytest.mark.parametrize("fraction, n_val", [(0.0, 0), (0.1, 1), (0.5, 4), (0.99, 7)])
def test_split_by_identity_is_disjoint_and_never_empty(w300lp, fraction, n_val):
    """8 identities: a tiny fraction still yields a val split; train always keeps one."""
    loader = W300LPLoader(w300lp)
    views = split_by_identity(loader, fraction)
    train, val = ({e.identity for e in views[k].entries} for k in ("train", "val"))
    assert len(val) == n_val and not train & val
    assert train | val == {e.identity for e in loader.entries}
    assert views["val"].entries == split_by_identity(W300LPLoader(w300lp), fraction)["val"].entries


def test_pose_from_3ddfa_hand_values():
    # 3DDFA's rotations are the transposed standard ones: single angles come back negated.
    np.testing.assert_allclose(pose_from_3ddfa(0.0, 0.5, 0.0), (-np.degrees(0.5), 0.0, 0.0), atol=1e-9)
    np.testing.assert_allclose(pose_from_3ddfa(0.3, 0.0, 0.0), (0.0, -np.degrees(0.3), 0.0), atol=1e-9)
    np.testing.assert_allclose(pose_from_3ddfa(0.0, 0.0, -0.2), (0.0, 0.0, np.degrees(0.2)), atol=1e-9)


def test_pose_from_3ddfa_reproduces_3ddfa_projection():
    """Points projected the 3DDFA way (face3d angle2matrix_3ddfa, then y flipped) equal the
    project's camera built from the converted angles (same scale and translation)."""
    pitch, yaw, roll, s, tx, ty, height = 0.3, -0.7, 0.25, 4.0, 60.0, 80.0, 200.0
    cx, sx, cy, sy, cz, sz = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    points = RNG.normal(0, 5, (30, 3))
    ddfa = s * points @ (rx @ ry @ rz).T + [tx, ty, 0.0]
    ddfa[:, 1] = height - ddfa[:, 1]
    yaw_p, pitch_p, roll_p = np.radians(pose_from_3ddfa(pitch, yaw, roll))
    ours = points @ compose_camera(CameraPose(s, yaw_p, pitch_p, roll_p, tx, height - ty))[:, :3].T + [tx, height - ty, 0]
    np.testing.assert_allclose(ours[:, :2], ddfa[:, :2], atol=1e-9)
    np.testing.assert_allclose(ours[:, 2], -ddfa[:, 2], atol=1e-9)  # why AFLW2000-3D's z is negated


@pytest.fixture
def aflw(tmp_path):
    root = tmp_path / "AFLW2000"
    pt3d = np.concatenate([landmarks2d().T, np.linspace(-20, 20, 68)[None]], axis=0)  # (3, 68)
    write_image(root / "image00002.jpg")
    scipy.io.savemat(str(root / "image00002.mat"), {"pt3d_68": pt3d, "Pose_Para": pose_para(0.0, 0.9, 0.0),
                                                    "pt2d": landmarks2d()[:21].T, "roi": np.zeros((1, 4))})
    write_image(root / "image00004.jpg")
    write_image(root / "image00006.jpg")
    scipy.io.savemat(str(root / "image00006.mat"), {"pt3d_68": pt3d[:2], "Pose_Para": pose_para()})
    return root, pt3d


def test_aflw2000_loads_3d_landmarks_in_project_convention(aflw):
    root, pt3d = aflw
    loader = AFLW2000Loader(root)
    samples = list(loader)
    assert len(samples) == 1
    sample = samples[0]
    assert sample.identity == "image00002" and sample.has_3d and sample.source == "AFLW2000-3D"
    np.testing.assert_allclose(sample.landmarks[:, :2], pt3d[:2].T)
    np.testing.assert_allclose(sample.landmarks[:, 2], -pt3d[2])
    np.testing.assert_allclose(sample.pose_deg, (-np.degrees(0.9), 0.0, 0.0), atol=1e-9)
    assert sorted((p.name, r) for p, r in loader.skipped) == [
        ("image00004.jpg", "missing image00004.mat"),
        ("image00006.mat", "key pt3d_68 has shape (2, 68), expected (3, 68)")]


@pytest.fixture
def lfw(tmp_path):
    root = tmp_path / "lfw"
    for name, n in [("Alice_Smith", 2), ("Bob", 1)]:
        for i in range(1, n + 1):
            write_image(root / name / f"{name}_{i:04d}.jpg", value=40 * i)
    (root / "Bob" / "Bob_0002.jpg").write_bytes(b"garbage")
    return root


def test_identity_folder_loader(lfw):
    loader = IdentityFolderLoader(lfw)
    samples = list(loader)
    assert [(s.identity, s.image_path.name) for s in samples] == [
        ("Alice_Smith", "Alice_Smith_0001.jpg"), ("Alice_Smith", "Alice_Smith_0002.jpg"), ("Bob", "Bob_0001.jpg")]
    assert all(s.landmarks is None and s.pose_deg is None and not s.has_3d for s in samples)
    assert samples[1].image[0, 0].tolist() == [80, 80, 80]
    assert [(p.name, r) for p, r in loader.skipped] == [("Bob_0002.jpg", "unreadable image")]


def test_lfw_pairs(lfw, tmp_path):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1\t1\nAlice_Smith\t1\t2\nAlice_Smith\t2\tBob\t1\n")
    pairs = read_lfw_pairs(pairs_file, images_root=lfw)
    assert pairs == [Pair(lfw / "Alice_Smith" / "Alice_Smith_0001.jpg", lfw / "Alice_Smith" / "Alice_Smith_0002.jpg", True),
                     Pair(lfw / "Alice_Smith" / "Alice_Smith_0002.jpg", lfw / "Bob" / "Bob_0001.jpg", False)]


@pytest.mark.parametrize("text, message", [
    ("2 1\nAlice_Smith 1 2\nAlice_Smith 2 Bob 1\n", "pairs.txt: header promises 4 pairs, file has 2"),
    ("1 1\nAlice_Smith 1 2\nAlice_Smith 2 Bob 1 x\n", "pairs.txt:3: expected 'name i j' or 'name1 i name2 j', got 5 fields"),
    ("1 1\nAlice_Smith 1 2\nAlice_Smith 2 Bob 7\n", "pairs.txt:3: image"),
    ("1 1\nAlice_Smith 1 x\nAlice_Smith 2 Bob 1\n", "pairs.txt:2: image number 'x'"),
    ("pairs\nAlice_Smith 1 2\n", "pairs.txt:1: header"),
])
def test_lfw_pairs_errors_name_file_and_line(lfw, tmp_path, text, message):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(text)
    with pytest.raises(SiamfaceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_lfw_pairs(pairs_file, images_root=lfw)


def test_pairs_csv_with_and_without_header(lfw, tmp_path):
    body = "lfw/Alice_Smith/Alice_Smith_0001.jpg,lfw/Alice_Smith/Alice_Smith_0002.jpg,1\n" \
           "lfw/Alice_Smith/Alice_Smith_0001.jpg, lfw/Bob/Bob_0001.jpg ,false\n"
    expected = [Pair(lfw / "Alice_Smith" / "Alice_Smith_0001.jpg", lfw / "Alice_Smith" / "Alice_Smith_0002.jpg", True),
                Pair(lfw / "Alice_Smith" / "Alice_Smith_0001.jpg", lfw / "Bob" / "Bob_0001.jpg", False)]
    (tmp_path / "with.csv").write_text("file_a,file_b,same\n" + body)
    (tmp_path / "without.csv").write_text(body)
    assert read_pairs_csv(tmp_path / "with.csv") == expected
    assert read_pairs_csv(tmp_path / "without.csv") == expected
    (tmp_path / "bad.csv").write_text(body + "lfw/Bob/Bob_0001.jpg,lfw/Bob/Bob_0001.jpg,maybe\n")
    with pytest.raises(SiamfaceError, match=r"bad.csv:3: 'same' must be"):
        read_pairs_csv(tmp_path / "bad.csv")
    (tmp_path / "missing.csv").write_text("lfw/Bob/Bob_0009.jpg,lfw/Bob/Bob_0001.jpg,0\n")
    with pytest.raises(SiamfaceError, match=r"missing.csv:1: image .*Bob_0009.jpg does not exist"):
        read_pairs_csv(tmp_path / "missing.csv")


def test_missing_or_empty_roots_are_user_errors(tmp_path):
    with pytest.raises(SiamfaceError, match="does not exist"):
        W300LPLoader(tmp_path / "nowhere")
    with pytest.raises(SiamfaceError, match="no 300W-LP images found .*AFW"):
        W300LPLoader(tmp_path)
    with pytest.raises(SiamfaceError, match="no AFLW2000-3D images found"):
        AFLW2000Loader(tmp_path)


def pts_text(points, n_points=68):
    """An iBUG .pts file as 300-W ships it: 1-based pixel coordinates."""
    return "version: 1\nn_points:  {}\n{{\n{}\n}}\n".format(
        n_points, "\n".join(f"{x + 1:.6f} {y + 1:.6f}" for x, y in points))


def test_read_pts_is_zero_based(tmp_path):
    points = landmarks2d(0.25)
    (tmp_path / "face.pts").write_text(pts_text(points))
    got = read_pts(tmp_path / "face.pts")
    assert got.dtype == np.float64 and got.shape == (68, 2)
    np.testing.assert_allclose(got, points, atol=1e-6)
    (tmp_path / "crlf.pts").write_text(pts_text(points).replace("\n", "\r\n"))
    np.testing.assert_allclose(read_pts(tmp_path / "crlf.pts"), points, atol=1e-6)


@pytest.mark.parametrize("text, reason", [
    ("version: 1\n{\n1 2\n}\n", "no 'n_points: N' header: not an iBUG .pts file"),
    (pts_text(landmarks2d()[:49], 49), "n_points is 49, expected 68 (the iBUG 68-point layout)"),
    (pts_text(landmarks2d()).replace("{", ""), "points are not enclosed in '{' and '}' lines"),
    ("version: 1\nn_points: 68\n{\n" + "1 2\n" * 67 + "}\n", "67 point lines between the braces, n_points says 68"),
    (pts_text(landmarks2d()).replace("41.000000 151", "41.000000 l51"), "point 1 reads '41.000000 l51.000000', "
                                                                        "expected two finite numbers 'x y'"),
    (pts_text(landmarks2d()).replace("\n}", " 3\n}"), "point 68 reads '161.000000 51.000000 3', "
                                                      "expected two finite numbers 'x y'"),
    (pts_text(np.r_[landmarks2d()[:67], [[np.nan, 1.0]]]), "point 68 reads 'nan 2.000000', "
                                                           "expected two finite numbers 'x y'"),
    (b"\xff\xfe\x00bad", "unreadable .pts (UnicodeDecodeError)"),
])
def test_read_pts_errors_name_the_file_and_the_problem(tmp_path, text, reason):
    path = tmp_path / "bad.pts"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SampleError) as err:
        read_pts(path)
    assert err.value.reason == reason and str(err.value) == f"{path}: {reason}"


def test_pts_folder_lists_annotated_images_in_subfolders(tmp_path):
    root = tmp_path / "300W"
    for name, offset in [("01_Indoor/indoor_001.png", 0), ("01_Indoor/indoor_002.jpg", 1), ("02_Outdoor/a.webp", 2),
                         ("02_Outdoor/b.tif", 3)]:
        write_image(root / name, value=10 * offset)
        (root / name).with_suffix(".pts").write_text(pts_text(landmarks2d(offset)))
    write_image(root / "01_Indoor" / "unannotated.bmp")
    write_image(root / "02_Outdoor" / "c.jpg")
    (root / "02_Outdoor" / "c.pts").write_text(pts_text(landmarks2d()[:10], 10))
    (root / "notes.txt").write_text("not an image")

    loader = PtsFolderLoader(root)
    samples = list(loader)
    assert [(s.identity, s.image_path.name) for s in samples] == [
        ("01_Indoor/indoor_001", "indoor_001.png"), ("01_Indoor/indoor_002", "indoor_002.jpg"),
        ("02_Outdoor/a", "a.webp"), ("02_Outdoor/b", "b.tif")]
    for k, s in enumerate(samples):
        np.testing.assert_allclose(s.landmarks, landmarks2d(k), atol=1e-6)
        assert s.pose_deg is None and not s.has_3d and s.source == "pts" and s.image.shape == (200, 200, 3)
    assert samples[3].image[0, 0].tolist() == [30, 30, 30]
    assert [(p.relative_to(root).as_posix(), r) for p, r in loader.skipped] == [
        ("01_Indoor/unannotated.bmp", "missing unannotated.pts"),
        ("02_Outdoor/c.pts", "n_points is 10, expected 68 (the iBUG 68-point layout)")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SiamfaceError, match="no pts images found under .*: expected images .* with NAME.pts beside"):
        PtsFolderLoader(tmp_path / "empty")
