"""The layers of fastrnn.keras, with Keras's names, arguments and weight layouts.

Usable as ``from fastrnn.keras import layers; layers.LSTM(32)``.
"""

from fastrnn.keras.layers.attention import AdditiveAttention, Attention
from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.core import Activation, Dense, Dropout, Embedding, Masking, TimeDistributed
from fastrnn.keras.layers.input_layer import InputLayer
from fastrnn.keras.layers.lambda_layer import Lambda
from fastrnn.keras.layers.merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply,
                                          Subtract)
from fastrnn.keras.layers.normalization import LayerNormalization
from fastrnn.keras.layers.pooling import GlobalAveragePooling1D, GlobalMaxPooling1D
from fastrnn.keras.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from fastrnn.keras.layers.reshaping import Flatten, Permute, RepeatVector, Reshape

__all__ = ["Layer", "InputLayer", "Dense", "Embedding", "Activation", "Dropout", "Masking", "TimeDistributed",
           "SimpleRNN", "LSTM", "GRU", "Bidirectional",
           "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Dot",
           "RepeatVector", "Reshape", "Flatten", "Permute",
           "GlobalAveragePooling1D", "GlobalMaxPooling1D", "LayerNormalization",
           "Attention", "AdditiveAttention", "Lambda"]
