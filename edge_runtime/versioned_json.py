"""Open the project's versioned JSON files (bundle.json, checkpoint meta, dataset manifest) one way:
readable, a JSON object, the format version this code reads and, where given, an expected kind;
anything else is one SiamfaceError naming the file, what was found and what to do."""
from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from .errors import SiamfaceError


def read_versioned_json(path: Path, version: int, what: str, fix: str, kinds: Collection[str] = ()) -> dict:
    """The object in ``path`` when its ``format_version`` is ``version`` (and its ``kind`` one of
    ``kinds``, if any); ``what`` names the file in errors ("bundle"), ``fix`` says what to do."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiamfaceError(f"{what} {path} is unreadable ({exc}): {fix}") from None
    found = data if isinstance(data, dict) else {}
    if found.get("format_version") != version or (kinds and found.get("kind") not in kinds):
        kind = f", kind {found.get('kind')}" if kinds else ""
        raise SiamfaceError(f"{path} is not a {what} this siamface reads (format {found.get('format_version')}{kind}, "
                            f"reads {version}): {fix}")
    return data
