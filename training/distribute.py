"""Where training runs: the tf.distribute strategy, which worker writes, and each replica's data.

With ``TF_CONFIG`` set (one per process: the cluster's addresses and this task), training runs
under ``MultiWorkerMirroredStrategy``: every worker holds a copy of the variables and gradients
are all-reduced each step. Otherwise MirroredStrategy over a machine's GPUs, or the default
strategy on one GPU or the CPU, as before.

Saving reads every variable and batch-normalisation statistics are averaged across workers
when read, so every worker must take part in each save and in validation. Only the chief's
files stay: the others write into a temporary folder that is removed at once (the pattern
tf.keras uses for ModelCheckpoint and BackupAndRestore).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import tensorflow as tf

from siamface.edge_runtime.errors import SiamfaceError


@dataclass(frozen=True)
class Cluster:
    """The strategy and this process's place in the cluster (worker 0 of 1 without TF_CONFIG)."""

    strategy: tf.distribute.Strategy
    description: str
    worker: int = 0
    workers: int = 1
    chief: bool = True

    def write_dir(self, folder: Path) -> Path:
        """Where this process saves what belongs in ``folder``: the folder itself on the chief."""
        return folder if self.chief else folder.parent / f".{folder.name}.worker-{self.worker}.tmp"

    def discard(self, written: Path) -> None:
        """Remove a non-chief's temporary copy (its content is the chief's)."""
        if not self.chief:
            shutil.rmtree(written, ignore_errors=True)


def current_cluster() -> Cluster:
    """The strategy for this process; call before any other TensorFlow work (collectives are
    configured when the eager context starts)."""
    spec = os.environ.get("TF_CONFIG")
    if spec:
        return _multi_worker(spec)
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return Cluster(tf.distribute.MirroredStrategy(), f"{len(gpus)} GPUs (MirroredStrategy)")
    return Cluster(tf.distribute.get_strategy(), ("GPU " + gpus[0].name) if gpus else "CPU")


def _multi_worker(spec: str) -> Cluster:
    try:
        config = json.loads(spec)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SiamfaceError(f"TF_CONFIG is not a tf.distribute cluster spec ({exc}): set it to "
                            f'{{"cluster": {{"worker": ["host:port", ...]}}, "task": {{"type": "worker", "index": 0}}}}'
                            ) from None
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
    # the chief is task "chief" when the cluster names one, else worker 0
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    worker = index + (1 if kind == "worker" and "chief" in cluster else 0)
    return Cluster(strategy, f"{workers} workers x {strategy.num_replicas_in_sync // workers} replicas "
                             f"(MultiWorkerMirroredStrategy), this is worker {worker}", worker, workers, chief)


def distribute(strategy: tf.distribute.Strategy,
               part_dataset: Callable[[int, int], tf.data.Dataset]) -> tf.distribute.DistributedDataset:
    """Each input pipeline (one per worker) reads only its replicas' rows of every global batch.

    ``part_dataset(part, parts)`` must yield part ``part`` of ``parts`` equal consecutive row
    blocks of each global batch. A pipeline feeding several local replicas yields their blocks one
    after another, which is the order the strategy hands elements to its replicas.
    """
    replicas = strategy.num_replicas_in_sync

    def per_pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        ds = part_dataset(context.input_pipeline_id, context.num_input_pipelines)
        if local == 1:
            return ds
        split = ds.map(lambda batch: {k: tf.reshape(v, [local, -1, *v.shape[1:]]) for k, v in batch.items()})
        return split.unbatch()

    return strategy.distribute_datasets_from_function(per_pipeline)
