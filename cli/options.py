"""Options shared by several subcommands."""
from __future__ import annotations

import click

face_model_option = click.option(
    "--face-model", type=click.Path(dir_okay=False), default=None, envvar="SIAMFACE_FACE_MODEL",
    help="Face-model .npz (default: $SIAMFACE_FACE_MODEL, else shared/assets/ict-face-model).")
config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                             help="YAML/JSON config file; KEY=VALUE arguments override it.")
