"""From a model's logits to the classes a client reads."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arrays import OutputArray


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float


def top_k(logits: OutputArray, k: int, labels: tuple[str, ...]) -> list[Prediction]:
    """The ``k`` likeliest classes by softmax, best first; a class without a label is named by its index."""
    logits = logits.astype(np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    k = min(k, len(probabilities))
    best = np.argpartition(-probabilities, k - 1)[:k]
    best = best[np.argsort(-probabilities[best])]
    return [Prediction(int(i), labels[i] if i < len(labels) else str(i), float(probabilities[i])) for i in best]
