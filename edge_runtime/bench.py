"""Per-stage latency of bundles on this device: detect, crop, invoke, decode, embed (p50/p90)."""
from __future__ import annotations

import numpy as np

from edge_runtime.image_io import read_image
from edge_runtime.reconstructor import Reconstructor, ReconstructorOptions

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
            rec = Reconstructor.from_bundle(path, ReconstructorOptions(num_threads=n))
            for _ in range(3):
                rec.reconstruct(image, boxes)
            rec.timings.clear()
            totals = []
            for _ in range(runs):
                before = {k: len(v) for k, v in rec.timings.items()}
                rec.reconstruct(image, boxes)
                totals.append(sum(sum(v[before.get(k, 0):]) for k, v in rec.timings.items() if k != "detect"))
            cells = "  ".join(f"{_percentiles(rec.timings.get(s, [])):>11}" for s in STAGES)
            lines.append(f"{rec.bundle.variant:<15} {n:>7}  {cells}   {_percentiles(totals)}")
    lines.append("* per face = crop + invoke + decode + embed over both passes (detector box, then landmark refine)")
    return lines
