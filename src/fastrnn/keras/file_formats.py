"""Which file format ``Model.save`` writes: chosen by the path's extension.

* ``.keras`` -- a real Keras 3 archive (:mod:`fastrnn.keras.keras_files`), which
  ``keras.saving.load_model`` reads: structure, weights and compile settings, no optimizer state;
* ``.h5`` / ``.hdf5`` -- refused: Keras 3 calls that whole-model format legacy, so fastrnn
  reads it but does not write it (``save_weights("x.weights.h5")`` writes weights as HDF5);
* ``.fastrnn`` or anything else -- fastrnn's own format (:mod:`fastrnn.keras.model_file`):
  bit-exact weights, compile settings and optimizer state.

Reading is :func:`fastrnn.keras.saving.load_model`, which recognises a file by its content.
"""

import os

from fastrnn.exceptions import ArgumentError
from fastrnn.keras import keras_files
from fastrnn.keras.model_file import save_model as save_fastrnn_model

__all__ = ["FASTRNN_EXTENSION", "save_model"]

FASTRNN_EXTENSION = ".fastrnn"


def save_model(model, filepath):
    """Write ``model`` to ``filepath`` in the format its extension names.

    Parameters
    ----------
    model : Sequential or Model
    filepath : str or os.PathLike
        ``.keras``: a Keras 3 archive (the model must be built; layers, weights and compile
        settings, no optimizer state). ``.h5``/``.hdf5``: refused (see the module docstring). Any other name,
        ``.fastrnn`` by convention: fastrnn's own format (see
        :func:`fastrnn.keras.model_file.save_model`).

    Raises
    ------
    ArgumentError
        For a ``.h5`` path.
    ModelFileError
        For a ``.keras`` path and a model Keras could not rebuild (unbuilt, or a layer such as
        ``Lambda`` whose code a file cannot hold).
    ImportError
        For a ``.keras`` path without h5py (``pip install "fastrnn[keras]"``).
    """
    path = os.fspath(filepath)
    lowered = path.lower()
    if lowered.endswith(".keras"):
        keras_files.save_keras_archive(model, path)
    elif lowered.endswith((".h5", ".hdf5")):
        raise ArgumentError(f"save: filepath {path!r} asks for the legacy Keras HDF5 model format, which "
                            "fastrnn reads but does not write; use a .keras path (Keras 3's format), "
                            f"a {FASTRNN_EXTENSION} path (fastrnn's own), or save_weights('....weights.h5')")
    else:
        save_fastrnn_model(model, path)
