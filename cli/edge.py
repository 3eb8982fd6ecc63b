"""Device-side commands under `siamface`: forwarded to the edge runtime's own CLI, so the commands,
their options and their exit codes are defined once (edge_runtime.cli)."""
from __future__ import annotations

import sys

import click

from siamface.edge_runtime.cli import COMMANDS


def _forwarder(name: str, help_text: str) -> click.Command:
    @click.command(name, help=f"{help_text} (see `siamface {name} --help`).", add_help_option=False,
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def forward(args) -> None:
        from siamface.edge_runtime.cli import main

        sys.exit(main([name, *args], prog="siamface"))

    return forward


EDGE_COMMANDS = [_forwarder(name, text) for name, text in COMMANDS.items()]
