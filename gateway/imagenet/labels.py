"""ImageNet class names."""

from __future__ import annotations

from pathlib import Path

from ..errors import LabelsError

__all__ = ["LabelsError", "load_labels", "torchvision_labels"]


def load_labels(path: Path, expected: int = 1000) -> tuple[str, ...]:
    try:
        names = tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    except OSError as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc.strerror}") from exc
    if len(names) != expected:
        raise LabelsError(f"labels file {path} has {len(names)} names; the models have {expected} classes")
    return names


def torchvision_labels() -> tuple[str, ...] | None:
    """torchvision's ImageNet category names, when torchvision imports here."""
    try:
        from torchvision.models import ResNet18_Weights
    except Exception:  # noqa: BLE001 - torchvision absent or broken beside this torch build
        return None
    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
