"""Keras-style facade of fastrnn: ``tf.keras`` code (layers, Sequential, compile/fit/predict/save) on NumPy arrays.

Usable as a drop-in for the common Keras workflow::

    from fastrnn import keras
    from fastrnn.keras import layers

    model = keras.Sequential([layers.Embedding(10000, 32), layers.SimpleRNN(32),
                              layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=3, validation_split=0.2)
    model.save("model.keras"); model = keras.load_model("model.keras")

This package never imports :mod:`fastrnn.nn` (the PyTorch-style facade).
"""

from fastrnn.keras import callbacks, layers, losses, metrics, models, optimizers, utils
from fastrnn.keras.callbacks import Callback, History
from fastrnn.keras.exceptions import ModelFileError, NotCompiledError
from fastrnn.keras.functional import Input
from fastrnn.keras.symbolic import KerasTensor
from fastrnn.keras.models import Model, Sequential
from fastrnn.keras.saving import load_model, save_model

__all__ = [
    "layers",
    "callbacks",
    "losses",
    "metrics",
    "optimizers",
    "models",
    "utils",
    "Sequential",
    "Model",
    "KerasTensor",
    "Input",
    "History",
    "Callback",
    "load_model",
    "save_model",
    "NotCompiledError",
    "ModelFileError",
]
