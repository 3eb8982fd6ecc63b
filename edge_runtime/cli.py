"""Device-side commands (argparse, so a device needs only numpy, OpenCV and LiteRT):
``python -m edge_runtime COMMAND`` for each of COMMANDS; ``siamface`` offers the same commands by
forwarding to ``main``. Results go to stdout (JSON Lines with --json), diagnostics to stderr through
logging, and the exit code follows edge_runtime.errors (one table for both CLIs).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np

from .errors import EXIT_BAD_INPUT, EXIT_CODES, EXIT_NO_MATCH, EXIT_OK, SiamfaceError
from .image_io import IMAGE_SUFFIXES
from .terminal import configure_logging, emit, log, progress

# The device commands, in --help order: one list for `python -m edge_runtime` and `siamface`.
COMMANDS = {"reconstruct": "3D faces from photos (files or folders)",
            "verify": "are two photos the same person? (or a photo and an enrolled --person)",
            "enroll": "add a person to the gallery", "identify": "who is this? (1:N against the gallery)",
            "gallery": "list or remove enrolled people", "bench": "per-stage latency of bundles",
            "check": "check a bundle on this device"}
DESCRIPTION = "siamface on a device: 3D faces, verification and a gallery from photos (numpy, OpenCV, LiteRT)"
SIDEWAYS_DEG = 40.0  # an eye line steeper than this is most likely a sideways photo
T = TypeVar("T")

BOX_HELP = "face box x0,y0,x1,y1 (pixels) used for every image instead of detection"
FEW_PHOTOS = 3  # a template of fewer photos gets a warning: identify accepts far fewer genuine probes
THRESHOLD_HELP = ("cosine threshold in [-1, 1] for this decision instead of the bundle's "
                  "(set that one with `siamface calibrate`)")
DEFAULT_GALLERY = os.environ.get("SIAMFACE_GALLERY", str(Path.home() / ".siamface" / "gallery.db"))
GALLERY_HELP = "SQLite gallery file ($SIAMFACE_GALLERY)"


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


def _reconstructor(args, model: str | None = None, threads: int | None = None):
    from .reconstructor import Reconstructor, ReconstructorOptions

    from .defaults import resolve_bundle

    model = resolve_bundle(model or args.model)
    options = ReconstructorOptions(getattr(args, "detector", "blazeface"), threads or args.threads,
                                   flip=getattr(args, "flip", True))
    with native_stderr_silenced():  # the XNNPACK notice is printed once per process, at the first model
        rec = Reconstructor.from_bundle(model, options)
    log.info(f"bundle {model}: variant {rec.bundle.variant}, {options.num_threads} thread(s), "
             f"detector {options.detector}")
    return rec


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


def _check_out(path: str) -> Path:
    """The --out folder checked before any work (it is created on first use, so a failed run leaves
    nothing behind): not a dangling symlink, not under a file, writable."""
    out = Path(path)
    if out.is_symlink() and not out.exists():
        raise SiamfaceError(f"--out {out} is a symlink to {os.readlink(out)}, which does not exist; "
                            f"create that folder or pass another --out")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise SiamfaceError(f"--out {out}: {existing} is a file, not a folder; pass a folder to write results into")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SiamfaceError(f"--out {out}: {existing} is not writable; pass a folder you can write to")
    return out


def _output_dir(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SiamfaceError(f"--out {out}: cannot create the folder ({exc.strerror}); pass a folder you can write to")
    return out


def _output_stems(paths: list[Path]) -> Iterator[str]:
    """Output names: the photo's stem; a stem already used in this run (a/face.jpg and b/face.jpg, or
    face.jpg and face.png) gets -2, -3, ... in the order given, so no result overwrites another."""
    used: set[str] = set()
    for path in paths:
        stem, n = path.stem, 1
        while stem in used:
            n += 1
            stem = f"{path.stem}-{n}"
        used.add(stem)
        yield stem


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """``--box x0,y0,x1,y1`` (None when not given); `siamface evaluate` reads its --box with this too."""
    if not text:
        return None
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or not all(map(math.isfinite, box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise SiamfaceError(f"--box {text!r} must be x0,y0,x1,y1: four finite numbers with x1 > x0 and y1 > y0")
    return box


def _box_text(box) -> str:
    return ",".join(f"{v:.0f}" for v in box)


def _check_box_on_image(path: Path, box, image: np.ndarray) -> None:
    """A --box must lie at least half on the photo (a box off the image would still "find" a face)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    inside = max(0.0, min(x1, w) - max(x0, 0.0)) * max(0.0, min(y1, h) - max(y0, 0.0))
    if inside < 0.5 * (x1 - x0) * (y1 - y0):
        raise SiamfaceError(f"--box {_box_text(box)} lies mostly outside {path} ({w}x{h} pixels); "
                            f"pass a box on the face")


def _eye_line_deg(rec, image: np.ndarray, face) -> float | None:
    """Slope of the line between the eyes (0 = upright) from the detector's keypoints for this face's
    box; None for a given --box. One more detector pass (a few ms): Face keeps no keypoints."""
    for detection in rec.detector.detect(image):
        if detection.keypoints is not None and np.allclose(detection.box, face.box):
            (x0, y0), (x1, y1) = detection.keypoints[:2]
            return math.degrees(math.atan2(y1 - y0, x1 - x0))
    return None


def _warn_sideways(rec, path: Path, image: np.ndarray, face, detected: bool) -> None:
    """A photo turned by 90 degrees without EXIF orientation: the detector still finds the face, its
    eye line near +-90 degrees, while a model trained on upright faces answers roll ~0 (so the
    reconstructed pose cannot tell). Not checked for a given --box (no detector pass)."""
    eye_line = _eye_line_deg(rec, image, face) if detected else None
    if eye_line is not None and abs(eye_line) > SIDEWAYS_DEG:
        log.warning(f"{path}: the photo looks sideways (eye line at {eye_line:+.0f} degrees); rotate it upright "
                    f"(or fix its EXIF orientation) for a reliable result")


def _faces(rec, path: Path, box=None, all_faces: bool = False):
    """(image, faces largest first: all of them or only the largest); no face is an error."""
    from .image_io import read_image

    image = read_image(path)
    if box is not None:
        _check_box_on_image(path, box, image)
    faces = rec.reconstruct(image, boxes=None if box is None else [box])
    if not faces:
        raise SiamfaceError(f"no face found in {path}: use a photo with a visible face or pass --box x0,y0,x1,y1")
    return image, (faces if all_faces else faces[:1])


def _one_face(rec, path: Path, args):
    """(face, record) for a decision: --face INDEX (0 = largest) or the largest, with a warning when the
    photo shows several; the record says which face was used, for the output."""
    image, faces = _faces(rec, path, parse_box(args.box), all_faces=True)
    index = 0 if args.face is None else args.face
    if index >= len(faces):
        raise SiamfaceError(f"--face {index}: {path} shows {len(faces)} face(s); pass --face 0 to "
                            f"{len(faces) - 1} (0 is the largest)")
    if len(faces) > 1 and args.face is None:
        log.warning(f"{path}: {len(faces)} faces found, using face 0 (the largest, box {_box_text(faces[0].box)}); "
                    f"pass --face INDEX to choose another")
    face = faces[index]
    _warn_sideways(rec, path, image, face, detected=args.box is None)
    return face, {"image": str(path), "face": index, "faces_found": len(faces),
                  "box": [round(float(v), 1) for v in face.box]}


def _batch(items: list[T], args, work: Callable[[T], object], path_of: Callable[[T], Path], after: str = "") -> list:
    """work(item) for every photo, going on past photos that fail (unreadable, no face): each failure is a
    JSON Lines record with --json, and one error line lists them all at the end."""
    results, failed = [], []
    for item in progress(items, "photo", args.quiet):
        try:
            results.append(work(item))
        except SiamfaceError as exc:
            failed.append(str(exc))
            if args.json:
                emit({"image": str(path_of(item)), "error": str(exc)})
    if failed:
        listed = failed[0] if len(items) == 1 else f"{len(failed)} of {len(items)} photos failed: {'; '.join(failed)}"
        raise SiamfaceError(listed + after)
    return results


def cmd_reconstruct(args) -> None:
    from . import mesh_io

    rec = _reconstructor(args)
    if args.video is not None or args.camera is not None:
        from .video import TrackerOptions, track_video

        summary = track_video(rec, args.camera if args.video is None else args.video, _output_dir(_check_out(args.out)),
                              TrackerOptions(args.detect_every, args.all_faces), args.overlay_video, args.embedding)
        emit(summary) if args.json else print(json.dumps(summary))
        return
    box = parse_box(args.box)
    out = _check_out(args.out)
    paths = _expand(args.images)

    def one(item: tuple[Path, str]) -> None:
        path, name = item
        image, faces = _faces(rec, path, box, args.all_faces)
        _warn_sideways(rec, path, image, faces[0], detected=box is None)
        stem = _output_dir(out) / name
        try:
            written = _write_reconstruction(mesh_io, args, rec, path, image, faces, stem)
        except OSError as exc:
            raise SiamfaceError(f"cannot write {exc.filename or stem}: {exc.strerror}; pass a folder you can "
                                f"write to as --out") from None
        yaw, pitch, roll = faces[0].pose
        if args.json:
            emit({"image": str(path), "faces": [{"box": [round(float(v), 1) for v in f.box],
                                                 "pose_deg": f.to_dict(embedding=False)["pose_deg"]} for f in faces],
                  "files": written})
        else:
            print(f"{path}: {len(faces)} face(s), yaw {yaw:+.1f} pitch {pitch:+.1f} roll {roll:+.1f} -> {stem}.json")

    _batch(list(zip(paths, _output_stems(paths))), args, one, path_of=lambda item: item[0])


def _write_reconstruction(mesh_io, args, rec, path: Path, image: np.ndarray, faces, stem: Path) -> list[str]:
    """Meshes, overlay and the JSON of one photo; the embedding (biometric data) only with
    --embedding, and then the JSON is private (0600) like the gallery. Returns the files written."""
    from .atomic import atomic_write

    written = []
    for k, face in enumerate(faces):
        suffix = f"_{k}" if len(faces) > 1 else ""
        if args.obj:
            written.append(f"{stem}{suffix}.obj")
            mesh_io.write_obj(written[-1], face.vertices, face.triangles, mesh_io.vertex_colours(image, face.vertices, face.triangles))
        if args.ply:
            written.append(f"{stem}{suffix}.ply")
            mesh_io.write_ply(written[-1], face.vertices, face.triangles, mesh_io.vertex_colours(image, face.vertices, face.triangles))
    if args.overlay:
        written.append(f"{stem}_overlay.png")
        mesh_io.write_png(written[-1], mesh_io.draw_overlay(image, faces))
    records = [f.to_dict(embedding=args.embedding) for f in faces]
    written.append(f"{stem}.json")
    with atomic_write(written[-1], "w", permissions=0o600 if args.embedding else None) as f:
        f.write(json.dumps({"image": str(path), "bundle": rec.bundle.variant, "model_sha256": rec.bundle.model_hash,
                            "faces": records}, indent=1))
    return written


def _decision(args, rec) -> tuple[float, str]:
    """(cosine threshold, where it comes from): --threshold when given, else the bundle's; both obey
    the one rule for thresholds (identity.cosine_threshold)."""
    from .identity import cosine_threshold

    if args.threshold is not None:
        return cosine_threshold(args.threshold, "--threshold"), "--threshold"
    return rec.bundle.threshold, rec.bundle.threshold_source


def _far(args, rec) -> float | None:
    """The FAR the bundle's threshold was measured at (on photo pairs); None for a --threshold, which
    nothing measured."""
    return rec.bundle.meta["verification"].get("far") if args.threshold is None else None


def _gallery(args, rec, threshold: float):
    from .identity import Gallery

    create = args.command == "enroll"  # only enroll may create a gallery (and its folder)
    if create:
        try:
            Path(args.gallery).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SiamfaceError(f"gallery {args.gallery}: cannot create its folder ({exc.strerror}: {exc.filename}); "
                                "pass a gallery path in a folder you can write") from None
    return Gallery(args.gallery, rec.bundle.identity_space, threshold, create=create)


def _match_exit(args, matched: bool) -> int:
    return EXIT_NO_MATCH if args.exit_code and not matched else EXIT_OK


def cmd_verify(args) -> int:
    """Two photos (cosine of their identity vectors), or one photo against an enrolled person's
    template with --person (the 1:1 check after `enroll`: the gallery is opened first, so a wrong
    gallery fails before any inference)."""
    rec = _reconstructor(args)
    threshold, source = _decision(args, rec)
    gallery = None if args.person is None else _gallery(args, rec, threshold)
    a, used_a = _one_face(rec, Path(args.image_a), args)
    if gallery is None:
        b, used_b = _one_face(rec, Path(args.image_b), args)
        score, against, faces = float(a.embedding @ b.embedding), {}, [used_a, used_b]
    else:
        verdict = gallery.verify(a.embedding, args.person)
        score, against, faces = verdict.score, {"person": verdict.name, "gallery": str(args.gallery)}, [used_a]
    emit({"score": round(score, 4), "score_kind": "cosine", **against, "threshold": round(threshold, 4),
          "threshold_source": source, "same_person": score >= threshold, "far_at_threshold": _far(args, rec),
          "faces": faces})
    return _match_exit(args, score >= threshold)


def cmd_enroll(args) -> None:
    rec = _reconstructor(args)
    used = _batch(_expand(args.images), args, lambda p: _one_face(rec, p, args), path_of=lambda p: p,
                  after="; nothing enrolled: fix or leave out these photos")
    gallery = _gallery(args, rec, rec.bundle.threshold)
    entry = gallery.enroll(args.name, np.stack([face.embedding for face, _ in used]), update=args.update)
    if args.json:
        emit({"enrolled": entry.name, "images": entry.count, "gallery": str(args.gallery),
              "faces": [record for _, record in used]})
    else:
        print(f"enrolled {entry.name} from {entry.count} image(s) into {args.gallery}")
    if entry.count < FEW_PHOTOS:
        log.warning(f"{entry.name}'s template holds {entry.count} photo(s): enrol 3-4 in different poses and light "
                    f"(add them with --update): a template of several accepts more genuine probes at the same "
                    f"threshold (docs/verification.md)")


def cmd_identify(args) -> int:
    rec = _reconstructor(args)
    threshold, source = _decision(args, rec)
    face, used = _one_face(rec, Path(args.image), args)
    result = _gallery(args, rec, threshold).identify(face.embedding, k=args.k)
    emit({"best": result.best, "score_kind": "cosine", "threshold": round(result.threshold, 4),
          "threshold_source": source, "far_at_threshold": _far(args, rec),
          "candidates": [[n, round(s, 4)] for n, s in result.candidates],
          "face": used})
    return _match_exit(args, result.best is not None)


def cmd_gallery(args) -> None:
    rec = _reconstructor(args)
    if args.action == "list" and args.name:
        args.gallery = args.name  # `gallery list PATH` lists PATH
    gallery = _gallery(args, rec, rec.bundle.threshold)
    if args.action == "remove":
        if not args.name:
            raise SiamfaceError("gallery remove needs a NAME")
        gallery.remove(args.name)
        emit({"removed": args.name}) if args.json else print(f"removed {args.name}")
        return
    for e in gallery.list():
        if args.json:
            emit({"name": e.name, "images": e.count, "enrolled_at": e.enrolled_at.isoformat()})
        else:
            print(f"{e.name}\t{e.count} image(s)\tenrolled {e.enrolled_at:%Y-%m-%d %H:%M}")


def cmd_bench(args) -> None:
    """Bench records (edge_runtime.bench) as JSON Lines with --json, else as bench_lines' text."""
    from .bench import bench_bundles, bench_gallery, bench_lines, bench_video
    from .defaults import resolve_bundle

    if not args.models and (args.video or not args.gallery):
        args.models = [str(resolve_bundle())]
    if args.image and args.models:  # timings of a photo without a face would time nothing ("0.00 ms")
        _faces(_reconstructor(args, args.models[0], threads=1), Path(args.image))
    records = [bench_gallery(args.gallery)] if args.gallery else []
    if args.video:
        records += [bench_video(m, args.video, n) for m in args.models for n in args.threads]
    elif args.models:
        records += bench_bundles(args.models, args.threads, args.runs, args.image)
    for record in records if args.json else []:
        emit(record)
    for line in [] if args.json else bench_lines(records):
        print(line)


def cmd_check(args) -> None:
    """Deployment check: bundle hashes, interpreter backend, one inference on a synthetic image."""
    from .crop import CropTransform
    from .interpreter import interpreter_backend

    rec = _reconstructor(args)
    grey = np.full((rec.size, rec.size, 3), 128, np.uint8)
    params, emb = rec.predict_crop(grey, CropTransform(0, 0, rec.size, rec.size))
    ok = bool(np.all(np.isfinite(params)) and np.isfinite(emb).all())
    if args.json:
        emit({"bundle": str(rec.bundle.root), "variant": rec.bundle.variant, "hashes": "ok",
              "interpreter": interpreter_backend(), "inference": "ok" if ok else "FAILED"})
    else:
        print(f"bundle {rec.bundle.root}: variant {rec.bundle.variant}, hashes ok, interpreter {interpreter_backend()}, "
              f"inference {'ok' if ok else 'FAILED'}")
    if not ok:
        raise SiamfaceError(f"{rec.bundle.root}: the model produced non-finite outputs; re-export the bundle")


def _count(text: str) -> int:
    """A whole number >= 1 (threads, runs, people): 0 is a usage error, not a bad model."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _index(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a face index (0 = the largest face)")
    return int(text)


def _output_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--json", action="store_true", help="results as JSON Lines on stdout (one object per line)")
    noise = c.add_mutually_exclusive_group()
    noise.add_argument("--quiet", action="store_true", help="errors only on stderr, no progress bars")
    noise.add_argument("--verbose", action="store_true", help="also informational lines on stderr")


def _decision_options(c: argparse.ArgumentParser) -> None:
    c.add_argument("--face", type=_index, metavar="INDEX",
                   help="face to use in a photo with several, 0 = the largest (default, with a warning)")
    if c.prog.split()[-1] != "enroll":
        c.add_argument("--exit-code", action="store_true", help="exit 1 when there is no match")


def parser(prog: str = "python -m edge_runtime") -> argparse.ArgumentParser:
    from .image_io import MAX_PIXELS, MAX_PIXELS_ENV

    epilog = (f"environment: SIAMFACE_BUNDLE (default --model), SIAMFACE_GALLERY (default --gallery), "
              f"{MAX_PIXELS_ENV} (largest photo accepted, default {MAX_PIXELS} pixels)\n{EXIT_CODES}")
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, func, help_text=None, model=True):
        help_text = help_text or COMMANDS[name]
        c = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES)
        if model:
            c.add_argument("--model", help="bundle folder (default: $SIAMFACE_BUNDLE, else the shipped models/default)")
            c.add_argument("--threads", type=_count, default=1, help="interpreter threads")
            c.add_argument("--detector", default="blazeface", help="face detector (blazeface, blazeface-full)")
            c.add_argument("--no-flip", dest="flip", action="store_false",
                           help="the crop alone: one invoke less per face where the bundle fuses the mirrored crop "
                                "(reconstruction.flip), at some accuracy")
        _output_options(c)
        c.set_defaults(func=func)
        return c

    c = command("reconstruct", cmd_reconstruct)
    source = c.add_mutually_exclusive_group(required=True)
    source.add_argument("images", nargs="*", default=[], help="photos or folders of photos")
    source.add_argument("--video", metavar="FILE", help="a video: faces tracked frame to frame, JSON Lines in --out")
    source.add_argument("--camera", type=int, metavar="N", help="camera N (OpenCV index), tracked like --video until Ctrl-C")
    c.add_argument("--detect-every", type=_count, default=30, metavar="N",
                   help="video/camera: run the detector every N frames (and whenever tracking is lost)")
    c.add_argument("--overlay-video", metavar="FILE", help="video/camera: write every frame's overlay (.avi or .mp4)")
    c.add_argument("--out", required=True)
    c.add_argument("--obj", action="store_true", help="write .obj meshes")
    c.add_argument("--ply", action="store_true", help="write .ply meshes")
    c.add_argument("--overlay", action="store_true", help="write overlay PNGs")
    c.add_argument("--all-faces", action="store_true", help="every face, not only the largest")
    c.add_argument("--box", help=BOX_HELP)
    c.add_argument("--embedding", action="store_true",
                   help="keep the identity embedding (biometric data) in the JSON, which is then private (0600)")
    c = command("verify", cmd_verify)
    c.add_argument("image_a")
    c.add_argument("image_b", nargs="?", help="the other photo (or --person instead)")
    c.add_argument("--person", metavar="NAME", help="check the photo against NAME's template in --gallery instead")
    c.add_argument("--gallery", default=DEFAULT_GALLERY, help=GALLERY_HELP)
    c.set_defaults(usage_error=c.error)  # main checks "a second photo or --person": argparse cannot say either-or
    c.add_argument("--box", help=BOX_HELP)
    c.add_argument("--threshold", help=THRESHOLD_HELP)
    _decision_options(c)
    for name, func in (("enroll", cmd_enroll), ("identify", cmd_identify), ("gallery", cmd_gallery)):
        c = command(name, func)
        c.add_argument("--gallery", default=DEFAULT_GALLERY, help=GALLERY_HELP)
        if name == "enroll":
            c.add_argument("name")
            c.add_argument("images", nargs="+")
            c.add_argument("--update", action="store_true", help="add to the person's template instead of replacing")
        elif name == "identify":
            c.add_argument("image")
            c.add_argument("-k", type=_count, default=5, help="candidates to list")
            c.add_argument("--threshold", help=THRESHOLD_HELP)
        else:
            c.add_argument("action", choices=("list", "remove"))
            c.add_argument("name", nargs="?", help="remove: the NAME; list: the gallery file (same as --gallery)")
        if name != "gallery":
            c.add_argument("--box", help=BOX_HELP)
            _decision_options(c)
    c = command("bench", cmd_bench, model=False)
    c.add_argument("models", nargs="*", help="bundle folders")
    c.add_argument("--gallery", type=_count, metavar="N", help="time identify against N random enrolled people")
    c.add_argument("--threads", type=_count, nargs="+", default=[1, 2])
    c.add_argument("--runs", type=_count, default=50)
    c.add_argument("--image", help="photo to use (default: a synthetic face-sized crop)")
    c.add_argument("--video", metavar="FILE", help="time tracking over this video instead (fps, per-frame p50)")
    command("check", cmd_check)
    return p


def main(argv: list[str] | None = None, prog: str = "python -m edge_runtime") -> int:
    """Run one device command; the exit code follows edge_runtime.errors (usage errors exit from argparse)."""
    args = parser(prog).parse_args(argv)
    if args.command == "verify" and (args.image_b is None) == (args.person is None):
        args.usage_error("verify takes two photos (verify A B) or one photo and an enrolled person "
                         "(verify A --person NAME)")
    configure_logging(args.quiet, args.verbose)
    try:
        return args.func(args) or EXIT_OK
    except SiamfaceError as exc:
        log.error(str(exc))
        return EXIT_BAD_INPUT
