"""Device-side commands (argparse, so a device needs only numpy, OpenCV and LiteRT):
``python -m edge_runtime reconstruct | verify | enroll | identify | gallery | bench | check``.
``siamface`` offers the same commands by forwarding to ``main``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from edge_runtime.errors import SiamfaceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
BOX_HELP = "face box x0,y0,x1,y1 (pixels) used for every image instead of detection"
THRESHOLD_HELP = ("cosine threshold in [-1, 1] for this decision instead of the bundle's "
                  "(set that one with `siamface calibrate`)")
DEFAULT_GALLERY = os.environ.get("SIAMFACE_GALLERY", str(Path.home() / ".siamface" / "gallery.db"))


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """LiteRT's C++ logger writes to file descriptor 2 ("INFO: Created TensorFlow Lite XNNPACK
    delegate", load errors that the Python exception repeats): hide it so stderr holds only our line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _reconstructor(args):
    from edge_runtime.reconstructor import Reconstructor, ReconstructorOptions

    if not args.model:
        raise SiamfaceError("no bundle given: pass --model BUNDLE_DIR or set SIAMFACE_BUNDLE")
    with native_stderr_silenced():  # the XNNPACK notice is printed once per process, at the first model
        return Reconstructor.from_bundle(args.model, ReconstructorOptions(args.detector, args.threads))


def _expand(paths: list[str]) -> list[Path]:
    """Files as given; folders expand to the images inside them (sorted)."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        images = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise SiamfaceError(f"folder {p} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                                f"pass image files or a folder of photos")
        out += images
    return out


def _output_dir(path: str) -> Path:
    """The --out folder, created on first use (so a failed run leaves nothing behind)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise SiamfaceError(f"--out {out} is a file, not a folder; pass a folder to write results into")
    out.mkdir(parents=True, exist_ok=True)
    return out


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """``--box x0,y0,x1,y1`` (None when not given); `siamface evaluate` reads its --box with this too."""
    if not text:
        return None
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise SiamfaceError(f"--box {text!r} must be x0,y0,x1,y1 with x1 > x0 and y1 > y0")
    return box


def _faces(rec, path: Path, box=None, all_faces: bool = False):
    from edge_runtime.image_io import read_image

    image = read_image(path)
    faces = rec.reconstruct(image, boxes=None if box is None else [box])
    if not faces:
        raise SiamfaceError(f"no face found in {path}: use a photo with a visible face or pass --box x0,y0,x1,y1")
    return image, (faces if all_faces else faces[:1])


def cmd_reconstruct(args) -> None:
    from edge_runtime import mesh_io

    rec = _reconstructor(args)
    box = parse_box(args.box)
    for path in _expand(args.images):
        image, faces = _faces(rec, path, box, args.all_faces)
        stem = _output_dir(args.out) / path.stem
        for k, face in enumerate(faces):
            suffix = f"_{k}" if len(faces) > 1 else ""
            if args.obj:
                mesh_io.write_obj(f"{stem}{suffix}.obj", face.vertices, face.triangles)
            if args.ply:
                mesh_io.write_ply(f"{stem}{suffix}.ply", face.vertices, face.triangles)
        if args.overlay:
            mesh_io.write_png(f"{stem}_overlay.png", mesh_io.draw_overlay(image, faces))
        mesh_io.write_json(f"{stem}.json", {"image": str(path), "bundle": rec.bundle.variant,
                                            "model_sha256": rec.bundle.model_hash,
                                            "faces": [f.to_dict() for f in faces]})
        yaw, pitch, roll = faces[0].pose
        print(f"{path}: {len(faces)} face(s), yaw {yaw:+.1f} pitch {pitch:+.1f} roll {roll:+.1f} -> {stem}.json")


def _decision(args, rec) -> tuple[float, str]:
    """(cosine threshold, where it comes from): --threshold when given, else the bundle's; both obey
    the one rule for thresholds (identity.cosine_threshold)."""
    from edge_runtime.identity import cosine_threshold

    if args.threshold is not None:
        return cosine_threshold(args.threshold, "--threshold"), "--threshold"
    return rec.bundle.threshold, rec.bundle.threshold_source


def _gallery(args, rec, threshold: float):
    from edge_runtime.identity import Gallery

    Path(args.gallery).parent.mkdir(parents=True, exist_ok=True)
    return Gallery(args.gallery, rec.bundle.model_hash, threshold)


def cmd_verify(args) -> None:
    rec = _reconstructor(args)
    threshold, source = _decision(args, rec)
    box = parse_box(args.box)
    _, (a,) = _faces(rec, Path(args.image_a), box)
    _, (b,) = _faces(rec, Path(args.image_b), box)
    score = float(a.embedding @ b.embedding)
    far = rec.bundle.meta["verification"].get("far") if args.threshold is None else None
    print(json.dumps({"score": round(score, 4), "score_kind": "cosine", "threshold": round(threshold, 4),
                      "threshold_source": source, "same_person": score >= threshold, "far_at_threshold": far}))


def cmd_enroll(args) -> None:
    rec = _reconstructor(args)
    box = parse_box(args.box)
    embeddings = [_faces(rec, p, box)[1][0].embedding for p in _expand(args.images)]
    entry = _gallery(args, rec, rec.bundle.threshold).enroll(args.name, np.stack(embeddings), update=args.update)
    print(f"enrolled {entry.name} from {entry.count} image(s) into {args.gallery}")


def cmd_identify(args) -> None:
    rec = _reconstructor(args)
    threshold, source = _decision(args, rec)
    _, (face,) = _faces(rec, Path(args.image), parse_box(args.box))
    result = _gallery(args, rec, threshold).identify(face.embedding, k=args.k)
    print(json.dumps({"best": result.best, "score_kind": "cosine", "threshold": round(result.threshold, 4),
                      "threshold_source": source, "candidates": [[n, round(s, 4)] for n, s in result.candidates]}))


def cmd_gallery(args) -> None:
    rec = _reconstructor(args)
    gallery = _gallery(args, rec, rec.bundle.threshold)
    if args.action == "remove":
        if not args.name:
            raise SiamfaceError("gallery remove needs a NAME")
        gallery.remove(args.name)
        print(f"removed {args.name}")
        return
    for e in gallery.list():
        print(f"{e.name}\t{e.count} image(s)\tenrolled {e.enrolled_at:%Y-%m-%d %H:%M}")


def cmd_bench(args) -> None:
    from edge_runtime.bench import bench_bundles

    for line in bench_bundles(args.models, args.threads, args.runs, args.image):
        print(line)


def cmd_check(args) -> None:
    """Deployment check: bundle hashes, interpreter backend, one inference on a synthetic image."""
    from edge_runtime.crop import CropTransform
    from edge_runtime.interpreter import interpreter_backend

    rec = _reconstructor(args)
    grey = np.full((rec.size, rec.size, 3), 128, np.uint8)
    params, emb = rec.predict_crop(grey, CropTransform(0, 0, rec.size, rec.size))
    ok = bool(np.all(np.isfinite(params)) and np.isfinite(emb).all())
    print(f"bundle {args.model}: variant {rec.bundle.variant}, hashes ok, interpreter {interpreter_backend()}, "
          f"inference {'ok' if ok else 'FAILED'}")
    if not ok:
        raise SiamfaceError(f"{args.model}: the model produced non-finite outputs; re-export the bundle")


def parser() -> argparse.ArgumentParser:
    from edge_runtime.image_io import MAX_PIXELS, MAX_PIXELS_ENV

    environment = (f"environment: SIAMFACE_BUNDLE (default --model), SIAMFACE_GALLERY (default --gallery), "
                   f"{MAX_PIXELS_ENV} (largest photo accepted, default {MAX_PIXELS} pixels)")
    p = argparse.ArgumentParser(prog="python -m edge_runtime", description=__doc__.splitlines()[0], epilog=environment)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, func, help_text):
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--model", default=os.environ.get("SIAMFACE_BUNDLE"), help="bundle folder ($SIAMFACE_BUNDLE)")
        c.add_argument("--threads", type=int, default=1, help="interpreter threads")
        c.add_argument("--detector", default="blazeface", help="face detector (blazeface, blazeface-full)")
        c.set_defaults(func=func)
        return c

    c = command("reconstruct", cmd_reconstruct, "3D faces from photos (files or folders)")
    c.add_argument("images", nargs="+")
    c.add_argument("--out", required=True)
    c.add_argument("--obj", action="store_true", help="write .obj meshes")
    c.add_argument("--ply", action="store_true", help="write .ply meshes")
    c.add_argument("--overlay", action="store_true", help="write overlay PNGs")
    c.add_argument("--all-faces", action="store_true", help="every face, not only the largest")
    c.add_argument("--box", help=BOX_HELP)
    c = command("verify", cmd_verify, "are two photos the same person?")
    c.add_argument("image_a")
    c.add_argument("image_b")
    c.add_argument("--box", help=BOX_HELP)
    c.add_argument("--threshold", help=THRESHOLD_HELP)
    for name, func, help_text in (("enroll", cmd_enroll, "add a person to the gallery"),
                                  ("identify", cmd_identify, "who is this? (1:N against the gallery)"),
                                  ("gallery", cmd_gallery, "list or remove enrolled people")):
        c = command(name, func, help_text)
        c.add_argument("--gallery", default=DEFAULT_GALLERY, help="SQLite gallery file ($SIAMFACE_GALLERY)")
        if name == "enroll":
            c.add_argument("name")
            c.add_argument("images", nargs="+")
            c.add_argument("--update", action="store_true", help="add to the person's template instead of replacing")
        elif name == "identify":
            c.add_argument("image")
            c.add_argument("-k", type=int, default=5)
            c.add_argument("--threshold", help=THRESHOLD_HELP)
        else:
            c.add_argument("action", choices=("list", "remove"))
            c.add_argument("name", nargs="?")
        if name != "gallery":
            c.add_argument("--box", help=BOX_HELP)
    c = sub.add_parser("bench", help="per-stage latency of bundles")
    c.add_argument("models", nargs="+", help="bundle folders")
    c.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    c.add_argument("--runs", type=int, default=50)
    c.add_argument("--image", help="photo to use (default: a synthetic face-sized crop)")
    c.set_defaults(func=cmd_bench)
    command("check", cmd_check, "check a bundle on this device")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except SiamfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
