"""Device-side commands under `siamface`: forwarded to the edge runtime's own CLI (one definition)."""
from __future__ import annotations

import sys

import click

FORWARD = {"reconstruct": "3D faces from photos", "verify": "are two photos the same person?",
           "enroll": "add a person to the gallery", "identify": "who is this? (1:N against the gallery)",
           "gallery": "list or remove enrolled people", "bench": "per-stage latency of bundles",
           "check": "check a bundle on this device"}


def _forwarder(name: str, help_text: str) -> click.Command:
    @click.command(name, help=f"{help_text} (see `siamface {name} --help`).", add_help_option=False,
                   context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def forward(args) -> None:
        from edge_runtime.cli import main

        code = main([name, *args])
        sys.exit(code)

    return forward


EDGE_COMMANDS = [_forwarder(name, text) for name, text in FORWARD.items()]
