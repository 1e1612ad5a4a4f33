"""Reading the YAML files operators write (pool, settings), with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_mapping(path: Path, what: str, error: type[Exception], *, empty_ok: bool = False) -> dict[str, Any]:
    """The mapping at the top of a YAML file; ``error(message)`` for unreadable, invalid or non-mapping files."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if loaded is None and empty_ok:
        return {}
    if not isinstance(loaded, dict):
        raise error(f"{what} {path} must hold a mapping")
    return loaded
