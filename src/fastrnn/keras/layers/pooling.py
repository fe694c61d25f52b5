"""Global pooling over the steps of a sequence: GlobalAveragePooling1D and GlobalMaxPooling1D.

As in Keras 3, the average is mask-aware (the mean over the valid steps; a row with no valid
step gives 0/0 = NaN, as Keras does) and the maximum does not support masking (a mask reaching
it is dropped, with a warning in Keras). Neither passes a mask on.
"""

import numpy as np

from fastrnn._validation import check_bool
from fastrnn.exceptions import ShapeError
from fastrnn.keras.layers.base import Layer
from fastrnn.keras.layers.core import check_gradient, check_mask, float_input, require_tape
from fastrnn.keras.layers.reshaping import _data_format

__all__ = ["GlobalAveragePooling1D", "GlobalMaxPooling1D"]


class _GlobalPooling1D(Layer):
    """Shapes, arguments and config of the two poolings.

    Parameters
    ----------
    data_format : {"channels_last", "channels_first"} or None
        (B, T, D) or (B, D, T); None is channels_last.
    keepdims : bool
        Keep the pooled axis with size 1.
    **kwargs
        As for :class:`Layer`.
    """

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = _data_format(data_format)
        self.keepdims = check_bool("keepdims", keepdims)
        self._tape = None

    @property
    def _steps_axis(self):
        return 1 if self.data_format == "channels_last" else 2

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ShapeError(f"layer {self.name!r} ({type(self).__name__}) needs inputs of 3 axes "
                             f"(batch included); got input shape (B, {', '.join(map(str, input_shape))})")
        features = input_shape[-1] if self.data_format == "channels_last" else input_shape[0]
        if not self.keepdims:
            return (features,)
        return (1, features) if self.data_format == "channels_last" else (features, 1)

    def compute_mask(self, x, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling1D):
    """The mean over the steps: (B, T, D) gives (B, D) (or (B, 1, D) with ``keepdims``).

    With a mask of shape (B, T), the mean over the valid steps only.
    """

    supports_masking = True

    def call(self, x, mask=None, training=False):
        """
        Parameters
        ----------
        x : array_like of shape (B, T, D) (channels_last) or (B, D, T)
        mask : ndarray of bool of shape (B, T), optional

        Returns
        -------
        ndarray of shape (B, D)
        """
        x = float_input(self, x, ndim=3)
        axis = self._steps_axis
        mask = check_mask(self, mask, (x.shape[0], x.shape[axis]))
        if mask is None:
            weights = np.full((1, 1, 1), np.nan if x.shape[axis] == 0 else 1 / x.shape[axis], self.dtype)
        else:
            valid = np.expand_dims(mask, 2 if axis == 1 else 1)
            counts = valid.sum(axis=axis, keepdims=True).astype(self.dtype)
            with np.errstate(divide="ignore", invalid="ignore"):
                weights = valid / counts  # 0/0 = NaN for a row with no valid step, as Keras
        with np.errstate(invalid="ignore"):
            y = (x * weights).sum(axis=axis, keepdims=self.keepdims) if mask is not None \
                else x.mean(axis=axis, keepdims=self.keepdims)
        self._tape = (x.shape, np.broadcast_to(weights, x.shape)) if training else None
        return y

    def backward(self, d_output):
        shape, weights = require_tape(self, self._tape)
        out_shape = list(shape)
        out_shape[self._steps_axis] = 1
        dy = check_gradient(self, d_output, tuple(out_shape) if self.keepdims
                            else tuple(s for i, s in enumerate(shape) if i != self._steps_axis))
        if not self.keepdims:
            dy = np.expand_dims(dy, self._steps_axis)
        return dy * weights


class GlobalMaxPooling1D(_GlobalPooling1D):
    """The maximum over the steps: (B, T, D) gives (B, D) (or (B, 1, D) with ``keepdims``).

    Does not support masking (Keras 3 neither). The gradient of a maximum reached at several
    steps is shared equally among them, as TensorFlow's.
    """

    def call(self, x, mask=None, training=False):
        """
        Parameters
        ----------
        x : array_like of shape (B, T, D) (channels_last) or (B, D, T)

        Returns
        -------
        ndarray of shape (B, D)
        """
        x = float_input(self, x, ndim=3)
        top = x.max(axis=self._steps_axis, keepdims=True)
        if training:
            hits = (x == top).astype(self.dtype)
            self._tape = (top.shape, hits / hits.sum(axis=self._steps_axis, keepdims=True))
        else:
            self._tape = None
        return top if self.keepdims else np.squeeze(top, self._steps_axis)

    def backward(self, d_output):
        kept_shape, share = require_tape(self, self._tape)
        shape = kept_shape if self.keepdims else tuple(s for i, s in enumerate(kept_shape)
                                                       if i != self._steps_axis)
        dy = check_gradient(self, d_output, shape)
        if not self.keepdims:
            dy = np.expand_dims(dy, self._steps_axis)
        return dy * share
