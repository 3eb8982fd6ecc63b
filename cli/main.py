"""`siamface` entry point: a click group whose subcommands load TensorFlow only when they run."""
from __future__ import annotations

import click

from siamface.edge_runtime.errors import EXIT_BAD_INPUT, EXIT_CODES, SiamfaceError
from siamface.edge_runtime.terminal import tensorflow_env

tensorflow_env()

# What `pip install siamface[train]` adds (requirements-train.txt), by import name.
TRAINING_STACK = {"tensorflow", "tf_keras", "tensorflow_model_optimization", "tensorboard", "numba", "llvmlite",
                  "scipy", "matplotlib", "yaml", "skimage"}


class SiamfaceGroup(click.Group):
    """Turns expected failures into one line on stderr and the exit code both CLIs use for them."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SiamfaceError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_BAD_INPUT)
        except ModuleNotFoundError as exc:  # a device install (`pip install siamface[edge]`) running a training command
            if (exc.name or "").split(".")[0] not in TRAINING_STACK:
                raise  # not a missing extra: a real bug, shown with its traceback
            click.echo(f"error: `siamface {ctx.invoked_subcommand}` needs the training stack ({exc.name} is missing): "
                       "pip install 'siamface[train]'; device commands work without it", err=True)
            ctx.exit(EXIT_BAD_INPUT)


@click.group(cls=SiamfaceGroup, epilog=f"\b\n{EXIT_CODES}")
@click.version_option(package_name="siamface")
def main() -> None:
    """siamface: one face photo to a 3D face and an identity, trained for the edge."""


def _register() -> None:
    from siamface.cli.calibrate import calibrate
    from siamface.cli.data import data
    from siamface.cli.demo import demo
    from siamface.cli.edge import EDGE_COMMANDS
    from siamface.cli.evaluate import compare, evaluate, evaluate_fit
    from siamface.cli.export import export_cmd
    from siamface.cli.texture_id import texture_id
    from siamface.cli.train import qat, train

    main.add_command(data)
    main.add_command(train)
    main.add_command(qat)
    main.add_command(export_cmd)
    main.add_command(texture_id)
    main.add_command(calibrate)
    main.add_command(evaluate)
    main.add_command(compare)
    main.add_command(evaluate_fit)
    main.add_command(demo)
    for command in EDGE_COMMANDS:
        main.add_command(command)


_register()
