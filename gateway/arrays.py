"""The numpy array types that annotations across the gateway share."""

from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

#: Intensities, energies, grams, shares: float64 throughout.
FloatArray: TypeAlias = npt.NDArray[np.float64]
#: Indices into a pool's candidates or a policy's hull.
IndexArray: TypeAlias = npt.NDArray[np.intp]
#: Model inputs: FP32 image tensors, one [3, 224, 224] or a batch [N, 3, 224, 224].
Float32Array: TypeAlias = npt.NDArray[np.float32]
#: A model's output as the inference server returns it: the model decides its dtype.
OutputArray: TypeAlias = npt.NDArray[Any]
