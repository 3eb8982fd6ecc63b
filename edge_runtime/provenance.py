"""What every artifact records about how it was made: tool versions and a timestamp."""
from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib import metadata


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are omitted)."""
    out = {"python": platform.python_version()}
    for name in ("siamface",) + packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
