"""Where the tests' data is: ``CARBON_GATEWAY_SHARED_DATA``, else ``../shared/data`` beside the project."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("CARBON_GATEWAY_SHARED_DATA", PROJECT.parent / "shared" / "data"))
IMAGES = sorted((SHARED_DATA / "images").glob("*.JPEG"))
LABELS_FILE = SHARED_DATA / "imagenet_classes.txt"
POOL_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
