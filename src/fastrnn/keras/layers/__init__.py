"""The layers of fastrnn.keras, with Keras's names, arguments and weight layouts.

Usable as ``from fastrnn.keras import layers; layers.LSTM(32)``.
"""

from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.core import Activation, Dense, Dropout, Embedding, Masking, TimeDistributed
from fastrnn.keras.layers.input_layer import InputLayer
from fastrnn.keras.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = ["Layer", "InputLayer", "Dense", "Embedding", "Activation", "Dropout", "Masking", "TimeDistributed",
           "SimpleRNN", "LSTM", "GRU", "Bidirectional"]
