"""Per-stage latency of bundles on this device: detect, crop, invoke, decode, embed (p50/p90)."""
from __future__ import annotations

import time

import numpy as np

from .image_io import read_image
from .reconstructor import Reconstructor, ReconstructorOptions

STAGES = ("detect", "crop", "invoke", "decode", "embed")


def _percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.percentile(values, 50):.2f}/{np.percentile(values, 90):.2f}"


def bench_bundles(bundles: list[str], threads: list[int], runs: int = 50, image_path: str | None = None) -> list[str]:
    """Table lines; with no image, a fixed box on a synthetic photo (detection not timed)."""
    image = read_image(image_path) if image_path else np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    boxes = None if image_path else [(240.0, 160.0, 400.0, 340.0)]
    lines = ["bundle          threads  " + "  ".join(f"{s:>11}" for s in STAGES) + "   per face*  (ms p50/p90)"]
    for path in bundles:
        for n in threads:
            rec = Reconstructor.from_bundle(path, ReconstructorOptions(num_threads=n, timing_window=4 * runs))
            for _ in range(3):
                rec.reconstruct(image, boxes)
            rec.timings.clear()
            totals = []
            for _ in range(runs):
                start = time.perf_counter()
                rec.reconstruct(image, boxes)
                detect = rec.timings["detect"][-1] if boxes is None else 0.0
                totals.append((time.perf_counter() - start) * 1e3 - detect)
            cells = "  ".join(f"{_percentiles(rec.timings.get(s, [])):>11}" for s in STAGES)
            lines.append(f"{rec.bundle.variant:<15} {n:>7}  {cells}   {_percentiles(totals)}")
    lines.append("* per face = crop + invoke + decode + embed over both passes (detector box, then landmark refine)")
    return lines


def bench_gallery(people: int, runs: int = 200, dim: int = 128) -> str:
    """`identify N people: p50 X ms`: random unit templates in a temp gallery, a new random probe per
    query; the first query (which loads the templates into memory) is not timed."""
    import tempfile
    from pathlib import Path

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
    return f"identify {people} people: p50 {np.percentile(times, 50):.3f} ms"


def bench_video(bundle: str, video: str, threads: int = 1, detect_every: int = 30) -> dict:
    """The tracker over a video: frames per second (frames decoded beforehand and not timed; a first
    run on frame 0, which loads the detector, not timed) and p50/p90 of the frames where detection
    was skipped (crop + invoke + decode on the crop from the previous frame's landmarks)."""
    from pathlib import Path

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
    p50, p90 = (round(float(np.percentile(tracked, q)), 3) if tracked else None for q in (50, 90))
    return {"video": Path(video).name, "bundle": rec.bundle.variant, "threads": threads, "detect_every": detect_every,
            "frames": len(frames), "fps": round(1e3 * len(frames) / total, 1), "tracked_frames": len(tracked),
            "tracked_p50_ms": p50, "tracked_p90_ms": p90}


def video_line(result: dict) -> str:
    """bench_video's result as the line `bench --video` prints."""
    ms = "-" if result["tracked_p50_ms"] is None else f"{result['tracked_p50_ms']:.2f}/{result['tracked_p90_ms']:.2f}"
    return (f"video {result['video']}: {result['bundle']}, {result['threads']} thread(s), detector every "
            f"{result['detect_every']} frames: {result['frames']} frames at {result['fps']:.1f} fps; per frame with "
            f"detection skipped p50/p90 {ms} ms ({result['tracked_frames']} frames)")
