"""Synthesis throughput: one core rendering in-process, and a full multi-process run to disk."""
from __future__ import annotations

import os
import tempfile
import time

from siamface.training.data.backgrounds import plate
from siamface.training.data.render_model import cached_face_model, load_render_model
from siamface.training.data.synth import FaceSynthesizer, SynthConfig, synthesize


def benchmark(images: int = 2000, workers: int = 0, face_model: str | None = None) -> list[str]:
    """Lines of figures: render-only images/s on one core once a worker has started (its meshes
    loaded, numba's cache read, every background plate drawn: what a long run sees), end-to-end
    images/s with all workers (start-up, rendering and shard writes), and what start-up took."""
    per_id = 10
    cfg = SynthConfig(train_identities=max(1, images // per_id), val_identities=0, test_identities=0,
                      images_per_identity=per_id, shard_size=250)
    start = time.perf_counter()
    model = cached_face_model(face_model)
    synth = FaceSynthesizer(model, cfg, load_render_model(model, face_model))  # the render mesh beside it
    synth.render_identity("train", 0)  # numba's cache
    background, side = cfg.scene.background, cfg.image_size * 2
    for i in range(background.plates):
        plate(background, side, i)
    startup = time.perf_counter() - start
    n_single = min(40, cfg.train_identities)
    start = time.perf_counter()
    synth.render_identities("train", 0, n_single)  # as a worker renders a shard
    single = n_single * per_id / (time.perf_counter() - start)
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthesize(tmp, cfg, face_model=face_model, workers=workers, progress=False)
        total = cfg.train_identities * per_id / (time.perf_counter() - start)
    return [f"render only, 1 core: {single:.0f} images/s ({cfg.image_size}x{cfg.image_size})",
            f"end to end, {workers} workers, {cfg.train_identities * per_id} images to disk: {total:.0f} images/s",
            f"start-up of a worker (in this process, one core): {startup:.1f} s"]
