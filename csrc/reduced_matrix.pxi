# Weight matrices in reduced precision, Cython backend; included by _cy.pyx. The C kernels
# are in reduced_gemm.h; the reference that defines their rounding is fastrnn._python.reduced.

from libc.stdint cimport int32_t

from reduced_gemm cimport (RP_BF16, RP_INT8, rp_column_align, rp_columns, rp_current_level,
                           rp_gemm, rp_level_name,
                           rp_level_supported, rp_matrix, rp_n_levels, rp_pack,
                           rp_pack_transposed, rp_panels_bytes, rp_scratch_bytes)

#: The reduced precisions and their codes in reduced_gemm.h.
REDUCED_PRECISIONS = {"bf16": RP_BF16, "int8": RP_INT8}


def reduced_levels():
    """The kernel level each reduced precision runs now.

    Returns
    -------
    dict of str to str
        ``{"bf16": ..., "int8": ...}``: level names of ``reduced_gemm.h``; they follow the
        float32 level (:func:`isa_level`, ``FASTRNN_ISA``) and the CPU.
    """
    return {name: rp_level_name(code, rp_current_level(code)).decode()
            for name, code in REDUCED_PRECISIONS.items()}


def reduced_levels_supported():
    """The kernel levels of each reduced precision this CPU runs.

    Returns
    -------
    dict of str to list of str
        ``{"bf16": [...], "int8": [...]}``: level names of ``reduced_gemm.h``, best first,
        whatever the float32 level in use (:func:`reduced_levels` gives the one that runs).
    """
    return {name: [rp_level_name(code, level).decode()
                   for level in reversed(range(rp_n_levels(code)))
                   if rp_level_supported(code, level)]
            for name, code in REDUCED_PRECISIONS.items()}


cdef int _reduced_level_named(int code, str precision, level) except -1:
    """The index of the level named ``level`` of ``precision``; ValueError if not run here."""
    supported = reduced_levels_supported()[precision]
    if level not in supported:
        raise ValueError(f"level must be one of {supported} for {precision} on this CPU; "
                         f"got {level!r}")
    for index in range(rp_n_levels(code)):
        if rp_level_name(code, index).decode() == level:
            return index
    return -1


cdef class PackedMatrix:
    """A weight matrix ``W`` of shape (N, K) packed once in bf16 or int8 for ``rp_gemm``.

    Parameters
    ----------
    precision : {"bf16", "int8"}
    w : ndarray of float32 of shape (N, K)
    level : str, optional
        The kernel level to pack for (one of ``reduced_levels_supported()[precision]``);
        by default the one that runs now (:func:`reduced_levels`).
    transposed : bool
        ``w`` is ``W^T``, of shape (K, N): W is packed from it directly (``rp_pack_transposed``,
        the backward pass's ``dz W`` and ``dz^T x``); bf16 only.

    The buffers are NumPy arrays the struct points into; the panels keep the level they
    were packed for (its layout is that level's) and always run its kernel.
    """

    cdef rp_matrix m
    cdef readonly object precision
    cdef object _panels, _scale, _colsum

    def __init__(self, str precision, w, level=None, bint transposed=False):
        cdef const float[:, ::1] wv = np.ascontiguousarray(w, dtype=np.float32)
        code = REDUCED_PRECISIONS[precision]
        if transposed and code != RP_BF16:
            raise ValueError(f"only bf16 packs a matrix from its transpose; got {precision!r}")
        self.precision = precision
        self.m.precision = code
        self.m.level = (rp_current_level(code) if level is None
                        else _reduced_level_named(code, precision, level))
        self.m.n = wv.shape[1] if transposed else wv.shape[0]
        self.m.k = wv.shape[0] if transposed else wv.shape[1]
        # 64 bytes of slack: kernels may read whole vectors past a panel's end
        self._panels = np.zeros(rp_panels_bytes(code, self.m.level, self.m.n, self.m.k) + 64,
                                np.uint8)
        self._scale = np.zeros(self.m.n, np.float32)
        self._colsum = np.zeros(self.m.n, np.int32)
        cdef unsigned char[::1] pv = self._panels
        cdef float[::1] sv = self._scale
        cdef int[::1] cv = self._colsum
        self.m.panels = &pv[0]
        self.m.scale = &sv[0] if self.m.n else NULL
        self.m.colsum = <int32_t*>&cv[0] if self.m.n else NULL
        if self.m.n and self.m.k:
            with nogil:
                if transposed:
                    rp_pack_transposed(&self.m, &wv[0, 0], self.m.n)
                else:
                    rp_pack(&self.m, &wv[0, 0], self.m.k)

    @property
    def level(self):
        """str: the kernel level these panels were packed for."""
        return rp_level_name(self.m.precision, self.m.level).decode()

    @property
    def shape(self):
        """tuple (N, K)."""
        return (self.m.n, self.m.k)

    @property
    def nbytes(self):
        """int: bytes of the packed weights and their scales."""
        return self._panels.nbytes + self._scale.nbytes + self._colsum.nbytes

    @property
    def scale(self):
        """ndarray of float32 of shape (N,): int8 row scales (zeros for bf16), a copy."""
        return self._scale.copy()

    @property
    def column_align(self):
        """int: output columns per panel; ``product(columns=...)`` starts at a multiple."""
        return rp_column_align(self.m.precision, self.m.level)

    def product(self, a, bias=None, out=None, columns=None):
        """``(bias or out) + a W^T`` in this precision, one call of ``rp_gemm``.

        Parameters
        ----------
        a : ndarray of float32 of shape (R, K)
            Its rows may lie apart (a slice of columns of a wider array): they are read in
            place, with their stride.
        bias : ndarray of float32 of shape (N,), optional
        out : ndarray of float32 of shape (R, N), optional
            Where the result goes; without ``bias`` the product is added to what it holds.
            Its rows may lie apart, as ``a``'s. By default a new array of zeros.
        columns : tuple (J0, J1), optional
            Compute only the output columns ``J0:J1`` (``J0`` a multiple of
            :attr:`column_align`), through ``rp_columns``, as threads splitting the outputs
            do; the other columns of ``out`` are left alone.

        Returns
        -------
        ndarray of float32 of shape (R, N)
            ``out`` when given.
        """
        cdef const float[:, :] av = _rows_in_place(a, "a")
        if av.shape[1] != self.m.k:
            raise ValueError(f"a must have {self.m.k} columns; got {av.shape[1]}")
        if out is None:
            out = np.zeros((av.shape[0], self.m.n), np.float32)
        elif (not isinstance(out, np.ndarray) or out.dtype != np.float32
              or out.shape != (av.shape[0], self.m.n)):
            raise ValueError(f"out must be a float32 ndarray of shape {(av.shape[0], self.m.n)}")
        cdef float[:, :] ov = _rows_in_place(out, "out")
        cdef const float[::1] bv
        cdef const float* b = NULL
        if bias is not None:
            bv = np.ascontiguousarray(bias, dtype=np.float32)
            if bv.shape[0] != self.m.n:
                raise ValueError(f"bias must have {self.m.n} entries; got {bv.shape[0]}")
            b = &bv[0] if self.m.n else NULL
        cdef Py_ssize_t j0 = 0, j1 = self.m.n
        if columns is not None:
            j0, j1 = columns
            if not (0 <= j0 <= j1 <= self.m.n and j0 % self.column_align == 0):
                raise ValueError(f"columns must be (J0, J1) with 0 <= J0 <= J1 <= {self.m.n} and "
                                 f"J0 a multiple of {self.column_align}; got {columns!r}")
        cdef rp_matrix part = rp_columns(&self.m, j0, j1 - j0)
        cdef Py_ssize_t rows = av.shape[0]
        if rows == 0 or j1 == j0:
            return out
        if b != NULL:
            b += j0
        scratch = np.zeros(rp_scratch_bytes(self.m.precision, self.m.level, rows, self.m.k) + 64,
                           np.uint8)
        cdef unsigned char[::1] scv = scratch
        cdef const float* ap = &av[0, 0] if self.m.k else NULL
        cdef Py_ssize_t lda = av.strides[0] // sizeof(float), ldc = ov.strides[0] // sizeof(float)
        with nogil:
            rp_gemm(&part, rows, ap, lda, b, &ov[0, j0], ldc, &scv[0])
        return out


def _rows_in_place(x, name):
    """``x`` as a 2-d float32 array whose rows are contiguous (a copy of ``a`` if they are
    not; ``out`` must be so already), with row strides a multiple of 4 bytes."""
    if name == "a":
        x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must have 2 dimensions; got {x.ndim}")
    if x.shape[0] and x.shape[1] and (x.strides[1] != 4 or x.strides[0] % 4 or x.strides[0] < 0):
        if name != "a":
            raise ValueError(f"{name} must have contiguous rows")
        x = np.ascontiguousarray(x)
    return x
