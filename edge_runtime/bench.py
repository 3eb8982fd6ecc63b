"""Latency on this device: per-stage times of bundles (detect, crop, invoke, decode, embed, mirror, texture), gallery
search, video tracking. Each bench returns records (dicts, the CLI's --json lines); ``bench_lines``
is the one place that turns them into text."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .image_io import read_image
from .reconstructor import Reconstructor, ReconstructorOptions

STAGES = ("detect", "crop", "invoke", "decode", "embed", "mirror", "texture")
TABLE_HEADER = "bundle          threads  " + "  ".join(f"{s:>11}" for s in STAGES) + "   per face*  (ms p50/p90)"
TABLE_FOOTNOTE = ("* per face = crop + invoke + decode + embed over both passes (detector box, then landmark refine),"
                  " + mirror with reconstruction.flip; mirror: the final crop's mirror image's invoke, in every"
                  " reconstruction with reconstruction.flip (the embedding reuses it), else what an identity check adds;"
                  " texture: the texture identity model's unwrap and invoke, what an identity check adds with one")


def _percentiles(values) -> dict | None:
    """{"p50", "p90"} in ms, or None when nothing was timed."""
    if len(values) == 0:
        return None
    return {"p50": round(float(np.percentile(values, 50)), 3), "p90": round(float(np.percentile(values, 90)), 3)}


def bench_bundles(bundles: list[str], threads: list[int], runs: int = 50, image_path: str | None = None) -> list[dict]:
    """One record per bundle and thread count: {bundle, threads, ms: {stage: {p50, p90} | None},
    per_face_ms}; with no image, a fixed box on a synthetic photo (detection not timed)."""
    image = read_image(image_path) if image_path else np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    boxes = None if image_path else [(240.0, 160.0, 400.0, 340.0)]
    records = []
    for path in bundles:
        for n in threads:
            rec = Reconstructor.from_bundle(path, ReconstructorOptions(num_threads=n, timing_window=4 * runs))
            for _ in range(3):
                rec.reconstruct(image, boxes)
            rec.timings.clear()
            totals = []
            for _ in range(runs):
                start = time.perf_counter()
                faces = rec.reconstruct(image, boxes)
                detect = rec.timings["detect"][-1] if boxes is None else 0.0
                totals.append((time.perf_counter() - start) * 1e3 - detect)
                faces[0].embedding  # what verify / identify add: the mirrored crop ("mirror"), the texture model
            records.append({"bundle": rec.bundle.variant, "threads": n,
                            "ms": {s: _percentiles(rec.timings.get(s, [])) for s in STAGES},
                            "per_face_ms": _percentiles(totals)})
    return records


def bench_gallery(people: int, runs: int = 200, dim: int = 128) -> dict:
    """{identify_people, p50_ms}: random unit templates in a temp gallery, a new random probe per
    query; the first query (which loads the templates into memory) is not timed."""
    import tempfile

    from .identity import Gallery

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        gallery = Gallery(Path(folder) / "bench.db", "bench", 0.5, create=True)
        gallery.enroll_many({f"person-{i:06d}": v for i, v in enumerate(rng.normal(size=(people, dim)))})
        gallery.identify(rng.normal(size=dim))
        times = []
        for probe in rng.normal(size=(runs, dim)):
            start = time.perf_counter()
            gallery.identify(probe)
            times.append((time.perf_counter() - start) * 1e3)
        gallery.close()
    return {"identify_people": people, "p50_ms": round(float(np.percentile(times, 50)), 4)}


def bench_video(bundle: str, video: str, threads: int = 1, detect_every: int = 30) -> dict:
    """The tracker over a video: frames per second (frames decoded beforehand and not timed; a first
    run on frame 0, which loads the detector, not timed), p50/p90 of the frames where detection
    was skipped (crop + invoke + decode on the crop the tracker predicts from the previous frames'
    landmarks), detector runs and how many of them a lost track caused."""
    from .video import Tracker, TrackerOptions, read_frames

    frames = [image for _, image in read_frames(video)]
    rec = Reconstructor.from_bundle(bundle, ReconstructorOptions(num_threads=threads))
    options = TrackerOptions(detect_every=detect_every)
    Tracker(rec, options).step(frames[0])
    tracker, tracked, total = Tracker(rec, options), [], 0.0
    for image in frames:
        start = time.perf_counter()
        _, detected = tracker.step(image)
        elapsed = (time.perf_counter() - start) * 1e3
        total += elapsed
        if not detected:
            tracked.append(elapsed)
    ms = _percentiles(tracked) or {"p50": None, "p90": None}
    return {"video": Path(video).name, "bundle": rec.bundle.variant, "threads": threads, "detect_every": detect_every,
            "frames": len(frames), "fps": round(1e3 * len(frames) / total, 1), "tracked_frames": len(tracked),
            "tracked_p50_ms": ms["p50"], "tracked_p90_ms": ms["p90"],
            "detector_runs": len(frames) - len(tracked), "lost": tracker.lost}


def _cell(ms: dict | None) -> str:
    return "-" if ms is None else f"{ms['p50']:.2f}/{ms['p90']:.2f}"


def _video_line(r: dict) -> str:
    ms = "-" if r["tracked_p50_ms"] is None else f"{r['tracked_p50_ms']:.2f}/{r['tracked_p90_ms']:.2f}"
    return (f"video {r['video']}: {r['bundle']}, {r['threads']} thread(s), detector every {r['detect_every']} frames: "
            f"{r['frames']} frames at {r['fps']:.1f} fps; per frame with detection skipped p50/p90 {ms} ms "
            f"({r['tracked_frames']} frames; detector {r['detector_runs']} times, {r['lost']} for a lost track)")


def bench_lines(records: list[dict]) -> list[str]:
    """The text of bench records, in their order: `identify N people: p50 X ms`, the video line,
    and the stage table (header, a row per bundle and thread count, footnote)."""
    lines, table = [], []
    for r in records:
        if "identify_people" in r:
            lines.append(f"identify {r['identify_people']} people: p50 {r['p50_ms']:.3f} ms")
        elif "video" in r:
            lines.append(_video_line(r))
        else:
            cells = "  ".join(f"{_cell(r['ms'][s]):>11}" for s in STAGES)
            table.append(f"{r['bundle']:<15} {r['threads']:>7}  {cells}   {_cell(r['per_face_ms'])}")
    return lines + ([TABLE_HEADER, *table, TABLE_FOOTNOTE] if table else [])
