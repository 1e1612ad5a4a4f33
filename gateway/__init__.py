"""Carbon-intensity-aware inference gateway."""

__version__ = "0.1.0"
