"""What the forward functions need to know of a packed-weights object: its class, and how
to read the arrays they would otherwise take (the objects themselves are in
:mod:`fastrnn.functional.packed`, which imports the forward modules)."""

from fastrnn.exceptions import ArgumentError


class PackedWeights:
    """Base class of :class:`~fastrnn.functional.packed.PackedRNN`, ``PackedLSTM`` and ``PackedGRU``."""

    __slots__ = ()
    #: The function that packs this class's weights, for messages.
    PACKER = ""
    #: The precision of the products, ``"float32"``, ``"bf16"`` or ``"int8"`` (set per object).
    precision = "float32"

    def forward_weights(self, function, expected, omitted):
        """The arrays a forward function takes in place of this object.

        Parameters
        ----------
        function : str
            The forward function, for messages.
        expected : str
            The packer whose objects it takes (``"pack_lstm"``).
        omitted : dict of str to object
            The forward function's other weight arguments; each must be None, since the
            packed object holds them.

        Returns
        -------
        dict of str to ndarray or None
            ``w_ih``, ``w_hh``, ``b_ih``, ``b_hh`` (and ``w_hr`` for a projected LSTM),
            read-only.

        Raises
        ------
        ArgumentError
            For weights of another cell, or a weight argument given besides the object.
        """
        if self.PACKER != expected:
            raise ArgumentError(f"{function} takes weights packed by {expected}; got a "
                                f"{type(self).__name__} (from {self.PACKER})")
        for name, value in omitted.items():
            if value is not None:
                raise ArgumentError(
                    f"{name} must be omitted when w_ih is a packed-weights object (it holds "
                    f"every weight); got {type(value).__name__}. Pass the initial states by keyword "
                    f"({function}(x, packed, h0=...))")
        return self.weights

    def forward_buffers(self, backend):
        """The packed buffers a forward function running on ``backend`` passes its kernel,
        or None when it runs on the arrays (:meth:`forward_weights`): the Cython kernels take
        the buffers of weights packed for the Cython backend; the Numba and Python kernels
        pack nothing. None in bf16 and int8, which run :meth:`reduced_layer` instead."""
        if self.precision != "float32":
            return None
        return self._kernel if backend == "cython" == self.backend else None
