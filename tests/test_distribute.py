"""Training on a cluster: two local worker processes (TF_CONFIG on 127.0.0.1 ports) train the
weights one process trains with the same global batch and seed, and a run whose worker is killed
after a checkpoint resumes when its workers restart, with every step done once. Plus the pieces
that need no second process: each worker's rows, TF_CONFIG errors, the learning-rate scaling."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from siamface.edge_runtime.errors import SiamfaceError
from siamface.training.config_io import config_to_dict
from siamface.training.data.dataset import Dataset
from siamface.training.distribute import current_cluster
from siamface.training.face_model import load_training_face_model
from siamface.training.losses import LossConfig
from siamface.training.model import EncoderConfig, build_encoder
from siamface.training.pairs import PKSampler
from siamface.training.pipeline import Flip, PKBatches, mirrored_labels
from siamface.training.train import TrainConfig, peak_learning_rate, train

SIAMFACE = str(Path(sys.executable).parent / "siamface")
TINY = EncoderConfig(width=0.35, last_channels=256, embedding_dim=32, dropout=0.0)
# Losses that are means over images, so the mean of the two workers' halves is the whole batch's
# (batch losses, e.g. supcon or the shape contrastive, see each worker's half only).
PER_IMAGE = LossConfig(n_sample_vertices=50, shape_contrastive=0.0, identity="cosface")


def _config(data: Path, **kw) -> TrainConfig:
    """P x K batches of 4 people x 2 photos: each of two workers takes one photo slice of the 4 people."""
    base = dict(data=[str(data)], batch_size=4, sampler="pk", pk_images=2, learning_rate=3e-3, warmup_steps=2,
                eval_images=12, encoder=TINY, loss=PER_IMAGE)
    return TrainConfig(**{**base, **kw})


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _start_workers(cfg: TrainConfig, out: Path, logs: Path, attempt: int) -> list[subprocess.Popen]:
    """Two `siamface train` processes, one TF_CONFIG each (new ports on every start)."""
    config = logs / "config.json"
    config.write_text(json.dumps(config_to_dict(cfg)))
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
               "TF_CONFIG": json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})}
        log = open(logs / f"worker{index}-{attempt}.log", "w")
        procs.append(subprocess.Popen([SIAMFACE, "train", "--config", str(config), "--out", str(out)], env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
    return procs


def _finish(procs: list[subprocess.Popen], logs: Path, timeout: float = 300) -> None:
    for p in procs:
        p.wait(timeout=timeout)
    tails = "\n".join(f"--- {f.name}\n{f.read_text()[-2000:]}" for f in sorted(logs.glob("worker*.log")))
    assert [p.returncode for p in procs] == [0, 0], tails


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "steps.jsonl").read_text().splitlines()]


def _trained_weights(out: Path) -> dict[str, np.ndarray]:
    """The encoder's and margin head's trainable weights in the last checkpoint (batch-norm moving
    statistics differ by design: each worker updates its own from its slice, averaged when read)."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out / "ckpt")))
    names = [k for k in reader.get_variable_to_shape_map() if k.startswith(("encoder/", "margin_head/"))
             and k.endswith("VARIABLE_VALUE") and "OPTIMIZER_SLOT" not in k and "moving_" not in k]
    return {k: reader.get_tensor(k) for k in names}


def _initial_weights(cfg: TrainConfig, data: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    """The encoder as ``train`` builds it before any step (same seed), under the checkpoint's names."""
    ds = Dataset.open(data)
    tf.keras.utils.set_random_seed(cfg.seed)
    encoder = build_encoder(replace(cfg.encoder, n_params=ds.layout.size, input_size=ds.image_size))
    reader = tf.train.load_checkpoint(tf.train.Checkpoint(encoder=encoder).write(str(tmp_path / "init" / "ckpt")))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.endswith("VARIABLE_VALUE")}


def test_two_workers_train_the_weights_of_one_process(tiny_data, tmp_path):
    """Two steps: the second uses the optimiser state both workers built from the summed gradients.

    Tolerance: the two-worker weights differ from one process's by under 5 % of the distance the
    steps moved them (L2 over the encoder's trainable weights; measured 1.2 %). Float sums in
    another order are all that differ, but Adam's first steps move every weight by about the
    learning rate whatever its gradient's size, so weights whose gradient is near zero take
    opposite signs and the difference grows with each step: one process with oneDNN off (other
    summation order) differed from itself with it on by 77 % of the distance after six steps.
    """
    cfg = _config(tiny_data, steps=2, eval_every=2)
    logs = tmp_path / "logs"
    logs.mkdir()
    _finish(_start_workers(cfg, tmp_path / "cluster", logs, 0), logs)
    train(cfg, tmp_path / "single", progress=False)

    cluster, single = _trained_weights(tmp_path / "cluster"), _trained_weights(tmp_path / "single")
    assert len(cluster) > 50 and cluster.keys() == single.keys()
    start = _initial_weights(cfg, tiny_data, tmp_path)
    encoder = [k for k in single if k.startswith("encoder/")]
    moved = np.sqrt(sum(np.sum((single[k] - start[k]) ** 2) for k in encoder))
    apart = np.sqrt(sum(np.sum((cluster[k] - single[k]) ** 2) for k in encoder))
    assert max(float(np.abs(single[k] - start[k]).max()) for k in encoder) == pytest.approx(4.5e-3, rel=0.05)  # 2 steps
    assert apart < 0.05 * moved, (apart, moved)
    head = float(np.abs(cluster["margin_head/class_vectors/.ATTRIBUTES/VARIABLE_VALUE"]
                        - single["margin_head/class_vectors/.ATTRIBUTES/VARIABLE_VALUE"]).max())
    assert head < 1e-5
    assert _steps(tmp_path / "cluster") == [1, 2]
    assert "2 workers x 1 replicas (MultiWorkerMirroredStrategy)" in (logs / "worker0-0.log").read_text()
    # only the chief's files remain, the same files as one process writes
    assert sorted(p.name for p in (tmp_path / "cluster").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir())


def test_a_killed_worker_restarts_and_every_step_runs_once(tiny_data, tmp_path):
    cfg = _config(tiny_data, steps=20, eval_every=5)
    out, logs = tmp_path / "run", tmp_path / "logs"
    logs.mkdir()
    procs = _start_workers(cfg, out, logs, 0)
    deadline = time.monotonic() + 240
    while not ((out / "steps.jsonl").is_file() and max(_steps(out), default=0) > 5):
        assert time.monotonic() < deadline and procs[0].poll() is None, "the cluster made no checkpoint"
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)          # worker 1 dies after the checkpoint at step 5
    procs[1].wait()
    try:                                           # its peer notices and fails ...
        procs[0].wait(timeout=60)
    except subprocess.TimeoutExpired:             # ... or, blocked in a collective, is stopped as a cluster manager would
        procs[0].kill()
        procs[0].wait()
    assert procs[0].returncode != 0 and max(_steps(out)) < 20

    _finish(_start_workers(cfg, out, logs, 1), logs)
    assert _steps(out) == list(range(1, 21))       # the steps after the checkpoint were redone, none twice
    for index in (0, 1):
        assert "resumed from" in (logs / f"worker{index}-1.log").read_text()
    assert json.loads((out / "best.json").read_text())["step"] in (5, 10, 15, 20)
    assert tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out / "ckpt"))).get_tensor(
        "step/.ATTRIBUTES/VARIABLE_VALUE") == 20


def test_each_part_reads_its_rows_of_the_same_batches(tiny_data):
    """The rows two workers read, put together, are the batch one process reads: the same people,
    photos, labels and (stateless, per step) augmentation, mirror choices (flip) included."""
    ds = Dataset.open(tiny_data)
    split = ds.split("train")
    flip = Flip(0.5, mirrored_labels(split, load_training_face_model(), ds.layout))
    batches = PKBatches(split, ds.whitening, PKSampler(split.identity, split.pose_deg[:, 0], 4, 2, seed=3), flip)
    whole = list(batches.dataset(start_step=5).take(3))
    parts = [list(batches.dataset(start_step=5, part=p, parts=2).take(3)) for p in (0, 1)]
    for step, batch in enumerate(whole):
        assert batch["image"].shape == (8, 64, 64, 3) and parts[1][step]["image"].shape == (4, 64, 64, 3)
        for key in ("image", "params", "class"):
            np.testing.assert_array_equal(batch[key].numpy(), np.concatenate([p[step][key].numpy() for p in parts]))
    again = next(iter(batches.dataset(start_step=6)))         # a resumed stream repeats step 6 exactly
    np.testing.assert_array_equal(again["image"].numpy(), whole[1]["image"].numpy())
    with pytest.raises(SiamfaceError, match="does not split into 3 equal parts"):
        batches.dataset(part=0, parts=3)


def test_a_bad_tf_config_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}}')
    with pytest.raises(SiamfaceError, match="TF_CONFIG is not a tf.distribute cluster spec"):
        current_cluster()


def test_the_learning_rate_follows_the_global_batch():
    from siamface.training.config_io import load_config

    gpu = load_config(TrainConfig, Path(__file__).resolve().parents[1] / "configs" / "train-gpu.yaml")
    assert peak_learning_rate(gpu, 256) == pytest.approx(0.008)       # 0.004 at 64 images, square root
    assert peak_learning_rate(replace(gpu, lr_scaling="linear"), 128) == pytest.approx(0.008)
    assert peak_learning_rate(replace(gpu, lr_scaling="none"), 256) == pytest.approx(0.004)
