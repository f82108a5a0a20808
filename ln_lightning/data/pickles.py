"""Data files that are pickles (CIFAR's batches, CIFAR-N's label files), read without running
code: only plain data and numpy arrays come out of them."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import torch

__all__ = ["load_cifar_n_file", "load_data_pickle"]

#: The only objects CIFAR's files build when unpickled: numpy arrays (as pickled by numpy 1 and
#: 2). Anything else in such a file is refused: unpickling it would run code.
_NUMPY_ARRAY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds plain data and numpy arrays only (Python's "restricting
    globals" recipe)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _NUMPY_ARRAY_GLOBALS or (
            module == "numpy.dtypes" and name.endswith("DType")
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it holds {module}.{name}, which loading would run as code")


def load_data_pickle(path: Path) -> object:
    """A CIFAR python batch or ``meta`` file, read without running code.

    Raises:
        ValueError: The file holds anything but plain data and numpy arrays.
    """
    with open(path, "rb") as handle:
        try:
            return _ArraysOnly(handle, encoding="latin1").load()
        except pickle.UnpicklingError as error:
            raise ValueError(f"refused to load {path}: {error}; it is no CIFAR file.") from None


def load_cifar_n_file(path: Path) -> object:
    """An official CIFAR-N ``*_human.pt`` file (a dict of numpy arrays, ``torch.save``d),
    read with ``weights_only=True`` and numpy's arrays allowed, so it cannot run code.

    Raises:
        ValueError: The file holds anything else.
    """
    reconstruct = getattr(np, "_core", None)
    reconstruct = (reconstruct or np.core).multiarray._reconstruct
    allowed = [
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *{type(np.dtype(kind)) for kind in ("int64", "int32", "uint8", "int16", "int8")},
    ]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        found = re.findall(r"GLOBAL ([\w.]+)", str(error))
        raise ValueError(
            f"refused to load {path}: it holds {', '.join(found) or 'objects'}, which loading "
            "would run as code; the official CIFAR-N files hold numpy arrays only."
        ) from None
