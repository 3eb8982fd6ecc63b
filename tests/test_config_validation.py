"""Configs are validated when loaded: types, ranges (``Range``) and choices (``Literal``) come from the
dataclass fields, and every error is one line naming the key and what it allows."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pytest

from siamface.edge_runtime.errors import SiamfaceError
from siamface.export.exporter import ExportConfig
from siamface.training.config_io import Range, build_config, config_to_dict, load_config
from siamface.training.data.fit_dataset import RealDatasetConfig
from siamface.training.data.synth import SynthConfig
from siamface.training.qat import QATConfig
from siamface.training.texture_id.train import TextureIdConfig
from siamface.training.train import TrainConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def rejects(cls, overrides: list[str], message: str, path: Path | None = None) -> None:
    """Loading fails with exactly ``message`` after the source, on one line."""
    with pytest.raises(SiamfaceError) as info:
        load_config(cls, path, overrides)
    text = str(info.value)
    assert "\n" not in text
    assert text == f"{path or 'config'}: {message}"


REJECTED = [
    # the examples: a type, a choice, a misspelt choice that used to become "normal"
    (TrainConfig, "steps=2k", "steps='2k' must be an integer"),
    (TrainConfig, "select_on=eer", "select_on='eer' is not one of 'nme', 'shape_error_mm', 'eer_embedding'"),
    (SynthConfig, "pose.yaw_distribution=unifrom", "pose.yaw_distribution='unifrom' is not one of 'uniform', 'normal'"),
    # ranges from the fields
    (QATConfig, "steps=0", "steps=0 must be >= 1"),
    (QATConfig, "learning_rate=0", "learning_rate=0 must be > 0"),
    (ExportConfig, "far_target=1.5", "far_target=1.5 must be > 0 and < 1"),
    (RealDatasetConfig, "fit.max_iterations=0", "fit.max_iterations=0 must be >= 1"),
    (SynthConfig, "images_per_identity=-3", "images_per_identity=-3 must be >= 1"),
    # types from the fields
    (RealDatasetConfig, "share_identity=maybe", "share_identity='maybe' must be true or false"),
    (SynthConfig, "id_truncation=lots", "id_truncation='lots' must be a number"),
    (SynthConfig, "seed=1.5", "seed=1.5 must be an integer"),
    (SynthConfig, "pose.distance_cm=[10]", "pose.distance_cm=[10] must have 2 items (tuple[float, float])"),
    (SynthConfig, "pose=3", "pose must be a mapping of PoseConfig's keys, got int 3"),
    (TrainConfig, "steps=true", "steps=True must be an integer"),
]


@pytest.mark.parametrize("cls, override, message", REJECTED)
def test_bad_values_fail_on_one_line_naming_the_key_and_what_it_allows(cls, override, message):
    rejects(cls, [override], message)


def test_valid_values_are_converted_as_their_fields_say():
    cfg = load_config(SynthConfig, None, ["pose.distance_cm=[10, 100]", "id_truncation=2", "pose.yaw_distribution=normal"])
    assert cfg.pose.distance_cm == (10.0, 100.0) and cfg.pose.yaw_distribution == "normal"
    assert cfg.id_truncation == 2.0 and isinstance(cfg.id_truncation, float)
    # YAML 1.1 reads 1e-3 (no dot) as a string: a float field takes it as the number it means
    assert load_config(QATConfig, None, ["learning_rate=1e-3"]).learning_rate == pytest.approx(1e-3)


def test_an_error_in_a_file_names_the_file_and_the_nested_key(tmp_path):
    path = tmp_path / "synth.yaml"
    path.write_text("seed: 3\npose:\n  yaw_distribution: unifrom\n")
    rejects(SynthConfig, [], "pose.yaw_distribution='unifrom' is not one of 'uniform', 'normal'", path)
    path.write_text("pose:\n  yaw: 3\n")
    with pytest.raises(SiamfaceError, match=re.escape("unknown key(s) ['yaw'] in pose for PoseConfig")):
        load_config(SynthConfig, path)


def test_shipped_configs_and_saved_configs_load():
    """Every config in configs/ passes, and a config written into a checkpoint or manifest reads back equal."""
    for path in sorted(CONFIGS.glob("*.yaml")):
        cls = {"synth": SynthConfig, "qat": QATConfig, "texture": TextureIdConfig}.get(path.name.split("-")[0],
                                                                                       TrainConfig)
        cfg = load_config(cls, path)
        assert build_config(cls, config_to_dict(cfg), str(path)) == cfg
    for cls in (QATConfig, ExportConfig, RealDatasetConfig, TextureIdConfig):
        assert build_config(cls, config_to_dict(cls()), "saved") == cls()


def test_optional_and_list_fields():
    @dataclass
    class Example:
        names: list[str] = field(default_factory=list)
        limit: Annotated[float, Range(ge=0, le=1)] | None = None
        mode: Literal["a", "b"] = "a"

    assert build_config(Example, {"names": ["x"], "limit": None}, "here") == Example(["x"], None)
    assert build_config(Example, {"limit": 1}, "here").limit == 1.0
    with pytest.raises(SiamfaceError, match=r"^here: names=\['x', 2\] must be a string$"):
        build_config(Example, {"names": ["x", 2]}, "here")
    with pytest.raises(SiamfaceError, match=r"^here: limit=2 must be "):
        build_config(Example, {"limit": 2}, "here")
