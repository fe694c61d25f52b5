# The streaming step, Cython backend; included by _cy.pyx (after the cells' .pxi files, whose
# pointwise helpers it shares: _lstm_cell, _gru_cell_after, _gru_cell_rz, _gru_cell_n,
# _tanh_inplace, _relu_inplace).
#
# A step is one time step of a layer, the weights packed once beforehand (StepWeights) and
# reused by every call: the sums and the code of a step are those of the forward kernels on
# T = 1 (the input projection with the bias in its epilogue, then the recurrent product and
# the gate math; fused, tile by tile, in float32 where the forward kernel fuses), so a step's
# results equal theirs bit for bit. One thread: a step of a small batch has nothing to share,
# and starting threads would cost more than the step. The arrays of a call are read through
# the buffer protocol (cheaper than typed memoryviews) and checked before anything is
# written; any mismatch raises ValueError, on which fastrnn.functional.packed validates the
# arguments again and says what is wrong. The workspace (a few rows of gates) lives on the
# stack, or in one malloc beyond STEP_STACK bytes.
#
# The packing is the forward kernels' own (_rnn_packed, _lstm_packed, _lstm_proj_packed,
# _gru_packed in the cells' .pxi files): pack_layer packs once into a StepWeights, which
# both the step and the forward on packed weights (rnn_forward_packed, ...) run on.

from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_GetBuffer)
from libc.stdlib cimport free, malloc

from packed_gemm cimport pg_get_level, pg_gru_step_float, pg_level_name
from fastrnn.exceptions import StaleCacheError


cdef enum:
    STEP_STACK = 32768         # bytes of workspace a step keeps on the stack
    STEP_STACK_DOUBLES = 4096  # the same in doubles (aligned for both dtypes)
    STEP_MAX_ARRAYS = 6


def pack_layer(str cell, w_ih, w_hh, bias, *, w_hr=None, b_hn=None, bint flag=False):
    """A layer's weights packed once in the forward kernels' layouts, for the step and the
    forward (``*_forward_packed``): the very packing each forward does per call on arrays.

    Parameters
    ----------
    cell : {"rnn", "lstm", "lstm_proj", "gru"}
    w_ih, w_hh : ndarray
        As the cell's forward kernel takes them (C-contiguous, float32 or float64).
    bias : ndarray of shape (G*H,)
        ``b_ih + b_hh`` (the GRU: ``bias_x``), kept by reference.
    w_hr : ndarray of shape (P, H), optional
        The projection (``"lstm_proj"``).
    b_hn : ndarray of shape (H,), optional
        The GRU's ``b_hh_n``, kept by reference.
    flag : bool
        ``relu`` for the RNN, ``reset_after`` for the GRU.

    Returns
    -------
    StepWeights
    """
    cdef bint single = w_ih.dtype == np.float32
    cdef Py_ssize_t D = w_ih.shape[1], H, P
    arrays = {"bias": bias}
    if cell == "rnn":
        H = P = w_hh.shape[0]
        packed = _rnn_packed[float](w_ih, w_hh) if single else _rnn_packed[double](w_ih, w_hh)
    elif cell == "lstm":
        H = P = w_hh.shape[1]
        packed = _lstm_packed[float](w_ih, w_hh) if single else _lstm_packed[double](w_ih, w_hh)
    elif cell == "lstm_proj":
        P, H = w_hr.shape[0], w_hr.shape[1]
        packed = (_lstm_proj_packed[float](w_ih, w_hh, w_hr) if single
                  else _lstm_proj_packed[double](w_ih, w_hh, w_hr))
        arrays["w_hr_t"] = packed[2]
    elif cell == "gru":
        H = P = w_hh.shape[1]
        packed = (_gru_packed[float](w_ih, w_hh, flag) if single
                  else _gru_packed[double](w_ih, w_hh, flag))
        arrays["b_hn"] = b_hn
        # W_hn^T follows [W_hr; W_hz]^T in the same buffer (reset_after=False reads it)
        arrays["w_hn_t"] = packed[1][(_gru_rz_size[float](0, H) if single
                                      else _gru_rz_size[double](0, H)):]
    else:
        raise ValueError(f"unknown cell {cell!r}")
    arrays["w_ih_t"], arrays["w_hh_t"] = packed[0], packed[1]
    return StepWeights(cell, arrays, D, H, P, flag)


# ---- the steps: the forward kernels' step t = 0 for all rows, one thread

cdef void _rnn_step(const floating* x, const floating* w_ih_t, const floating* w_hh_t,
                    const floating* bias, const floating* h, bint relu, floating* h_out,
                    Py_ssize_t B, Py_ssize_t D, Py_ssize_t H) noexcept nogil:
    """``h_out = phi(x W_ih^T + b + h W_hh^T)``: rnn.pxi's projection, product and activation."""
    gemm_packed_bias(B, H, D, x, D, w_ih_t, bias, h_out, H)
    gemm_packed(B, H, H, h, H, w_hh_t, h_out, H)
    if relu:
        _relu_inplace(h_out, B * H)
    else:
        _tanh_inplace(h_out, B * H)


cdef void _lstm_step(const floating* x, const floating* w_ih_t, const floating* w_hh_t,
                     const floating* bias, const floating* h, const floating* c,
                     floating* h_out, floating* c_out, floating* z,
                     Py_ssize_t B, Py_ssize_t D, Py_ssize_t H) noexcept nogil:
    """lstm.pxi's step: ``z`` (B, 4H) takes the projection, then the gates (float32: fused)."""
    cdef Py_ssize_t r, G = LSTM_GATES * H
    gemm_packed_bias(B, G, D, x, D, w_ih_t, bias, z, G)
    if floating is float:
        pg_lstm_step_float(B, H, h, w_hh_t, z, c, c_out, h_out, 0, H)
    else:
        gemm_packed(B, G, H, h, H, w_hh_t, z, G)
        for r in range(B):
            _lstm_cell(z + r * G, c + r * H, c_out + r * H, h_out + r * H, H)


cdef void _lstm_proj_step(const floating* x, const floating* w_ih_t, const floating* w_hh_t,
                          const floating* w_hr_t, const floating* bias, const floating* h,
                          const floating* c, floating* h_out, floating* c_out, floating* z,
                          floating* m, Py_ssize_t B, Py_ssize_t D, Py_ssize_t H,
                          Py_ssize_t P) noexcept nogil:
    """lstm_proj.pxi's step: ``z`` (B, 4H) and ``m`` (B, H) are workspace; ``h`` is (B, P)."""
    cdef Py_ssize_t r, G = LSTM_GATES * H
    gemm_packed_bias(B, G, D, x, D, w_ih_t, bias, z, G)
    gemm_packed(B, G, P, h, P, w_hh_t, z, G)
    for r in range(B):
        _lstm_cell(z + r * G, c + r * H, c_out + r * H, m + r * H, H)
    memset(h_out, 0, B * P * sizeof(floating))
    gemm_packed(B, P, H, m, H, w_hr_t, h_out, P)


cdef void _gru_step(const floating* x, const floating* w_ih_t, const floating* w_hh_t,
                    const floating* w_hn_t, const floating* bias_x, const floating* b_hn,
                    const floating* h, bint reset_after, floating* h_out, floating* g,
                    floating* scratch, Py_ssize_t B, Py_ssize_t D, Py_ssize_t H) noexcept nogil:
    """gru.pxi's step: ``g`` (B, 4H) takes the projection, then ``[r, z, n, hn]``; ``scratch``
    holds 4*B*H elements (the recurrent products and ``r * h``)."""
    cdef Py_ssize_t b
    cdef floating* gh = scratch
    cdef floating* ghn = scratch + B * 2 * H
    cdef floating* rh = scratch + B * 3 * H
    gemm_packed_bias(B, 3 * H, D, x, D, w_ih_t, bias_x, g, 4 * H)
    if reset_after:
        if floating is float:
            pg_gru_step_float(B, H, h, w_hh_t, b_hn, g, h_out, 0, H)
        else:
            memset(gh, 0, B * 3 * H * sizeof(floating))
            gemm_packed(B, 3 * H, H, h, H, w_hh_t, gh, 3 * H)
            for b in range(B):
                _gru_cell_after(gh + b * 3 * H, b_hn, h + b * H, g + b * 4 * H, h_out + b * H, H)
    else:
        memset(gh, 0, B * 2 * H * sizeof(floating))
        gemm_packed(B, 2 * H, H, h, H, w_hh_t, gh, 2 * H)
        for b in range(B):
            _gru_cell_rz(gh + b * 2 * H, h + b * H, g + b * 4 * H, rh + b * H, H)
        memset(ghn, 0, B * H * sizeof(floating))
        gemm_packed(B, H, H, rh, H, w_hn_t, ghn, H)
        for b in range(B):
            _gru_cell_n(ghn + b * H, b_hn, h + b * H, g + b * 4 * H, h_out + b * H, H)


# ---- one call's arrays, read through the buffer protocol

cdef class _CallArrays:
    """The buffers of one call: acquired with their checks, released together."""
    cdef Py_buffer views[STEP_MAX_ARRAYS]
    cdef int count

    def __dealloc__(self):
        cdef int i
        for i in range(self.count):
            PyBuffer_Release(&self.views[i])

    cdef char* take(self, object array, bint writable, bint single, Py_ssize_t rows,
                    Py_ssize_t cols) except NULL:
        """The data of a C-contiguous (rows, cols) array of the step's dtype (rows < 0: any)."""
        cdef Py_buffer* view = &self.views[self.count]
        cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0)
        cdef const char* fmt
        PyObject_GetBuffer(array, view, flags)
        self.count += 1
        fmt = view.format
        if fmt[0] == c'<' or fmt[0] == c'=' or fmt[0] == c'@':
            fmt += 1
        if (view.ndim != 2 or fmt[1] != 0 or fmt[0] != (c'f' if single else c'd')
                or (rows >= 0 and view.shape[0] != rows) or view.shape[1] != cols):
            raise ValueError("an array of the step has the wrong dtype, layout or shape")
        # a pointer past the end stands for an empty array: nothing reads or writes it
        return <char*>view.buf

    cdef int check_disjoint(self, int first_output) except -1:
        """Outputs (views ``first_output:``) must share no memory with any other array, except
        that the cell state may be updated in place (equal pointers of views 2 and 4)."""
        cdef int i, j
        cdef char* a0
        cdef char* b0
        for i in range(first_output, self.count):
            a0 = <char*>self.views[i].buf
            for j in range(self.count):
                if j == i or self.views[i].len == 0 or self.views[j].len == 0:
                    continue
                b0 = <char*>self.views[j].buf
                if j == 2 and i == 4 and a0 == b0:
                    continue
                if a0 < b0 + self.views[j].len and b0 < a0 + self.views[i].len:
                    raise ValueError("an output of the step shares memory with another array")
        return 0


cdef class StepWeights:
    """One layer's weights packed for :meth:`step`, read-only after construction.

    Parameters
    ----------
    cell : {"rnn", "lstm", "lstm_proj", "gru"}
    arrays : dict of str to ndarray
        The packed buffers and the bias, C-contiguous, of one dtype (float32 or float64):
        ``w_ih_t``, ``w_hh_t``, ``bias`` (``bias_x`` and ``b_hn`` for the GRU), and
        ``w_hr_t`` (lstm_proj) or ``w_hn_t`` (GRU with reset_after=False). Kept by reference,
        packed on the ISA level in use when this object is made; :meth:`step` refuses to run
        them on another.
    D, H, P : int
        Input size, hidden size, projection size (P = H without projection).
    flag : bool
        ``relu`` for the RNN, ``reset_after`` for the GRU; unused otherwise.
    """

    cdef object arrays
    cdef int level                   # the ISA level (isa.h) whose layout the buffers have
    cdef int kind                    # 0 rnn, 1 lstm, 2 lstm_proj, 3 gru
    cdef bint single, flag
    cdef Py_ssize_t D, H, P
    cdef const char* w_ih_t
    cdef const char* w_hh_t
    cdef const char* w_extra         # w_hr_t or w_hn_t
    cdef const char* bias
    cdef const char* b_hn

    def __init__(self, str cell, dict arrays, Py_ssize_t D, Py_ssize_t H, Py_ssize_t P, bint flag):
        self.kind = {"rnn": 0, "lstm": 1, "lstm_proj": 2, "gru": 3}[cell]
        self.level = pg_get_level()  # the buffers were just packed on it
        self.arrays = arrays
        self.D, self.H, self.P, self.flag = D, H, P, flag
        self.single = arrays["w_ih_t"].dtype == np.float32
        self.w_ih_t = self._pointer(arrays["w_ih_t"])
        self.w_hh_t = self._pointer(arrays["w_hh_t"])
        self.w_extra = self._pointer(arrays.get("w_hr_t", arrays.get("w_hn_t")))
        self.bias = self._pointer(arrays["bias"])
        self.b_hn = self._pointer(arrays.get("b_hn"))

    cpdef check_level(self):
        """Raise StaleCacheError unless the ISA level that packed these weights runs now."""
        if pg_get_level() != self.level:  # panel widths differ between levels
            raise StaleCacheError(
                f"these weights were packed for the {pg_level_name(self.level).decode()} kernels, "
                f"and the {pg_level_name(pg_get_level()).decode()} kernels run now "
                "(fastrnn._cy.set_isa_level): pack them again")

    cdef int check_forward(self, int kind, bint single, Py_ssize_t D) except -1:
        """For a forward kernel of cell ``kind`` on ``single`` (float32) data with D inputs."""
        self.check_level()
        if kind != self.kind or single != self.single or D != self.D:
            raise ValueError("packed weights of another cell, dtype or input size")
        return 0

    cdef const char* _pointer(self, object array):
        if array is None:
            return NULL
        return <const char*><size_t>array.ctypes.data

    def step(self, x, h, c, h_out, c_out):
        """Run one step: ``h_out`` (and ``c_out``) from ``x`` (B, D), ``h`` (B, P) and ``c`` (B, H).

        ``c`` and ``c_out`` are None for the RNN and the GRU; ``c_out`` may be ``c``. Raises
        ValueError, before writing anything, when an array does not fit.
        """
        cdef _CallArrays calls = _CallArrays()
        cdef Py_ssize_t B, D = self.D, H = self.H, P = self.P
        cdef bint single = self.single, gated = self.kind == 1 or self.kind == 2
        cdef size_t size = 4 if single else 8
        self.check_level()
        cdef char* x_p = calls.take(x, False, single, -1, D)
        B = calls.views[0].shape[0]
        cdef char* h_p = calls.take(h, False, single, B, P)
        cdef char* c_p = NULL
        if gated:
            c_p = calls.take(c, False, single, B, H)
        cdef char* h_out_p = calls.take(h_out, True, single, B, P)
        cdef char* c_out_p = NULL
        if gated:
            c_out_p = calls.take(c_out, True, single, B, H)
        calls.check_disjoint(3 if gated else 2)
        if B == 0 or H == 0:
            return
        # workspace: gates (4H per row) and, for the projection or the GRU, 1H or 4H more
        cdef Py_ssize_t work_rows = 4 * H + (H if self.kind == 2 else 4 * H if self.kind == 3 else 0)
        cdef size_t need = <size_t>(B * work_rows) * size
        cdef double stack[STEP_STACK_DOUBLES]
        cdef char* work = <char*>stack
        cdef int kind = self.kind
        cdef bint flag = self.flag
        cdef const char* w_ih_t = self.w_ih_t
        cdef const char* w_hh_t = self.w_hh_t
        cdef const char* w_extra = self.w_extra
        cdef const char* bias = self.bias
        cdef const char* b_hn = self.b_hn
        if kind != 0 and need > STEP_STACK:
            work = <char*>malloc(need)
            if work == NULL:
                raise MemoryError()
        try:
            with nogil:
                if single:
                    _step_run(kind, flag, <const float*>w_ih_t, <const float*>w_hh_t,
                              <const float*>w_extra, <const float*>bias, <const float*>b_hn,
                              <const float*>x_p, <const float*>h_p, <const float*>c_p,
                              <float*>h_out_p, <float*>c_out_p, <float*>work, B, D, H, P)
                else:
                    _step_run(kind, flag, <const double*>w_ih_t, <const double*>w_hh_t,
                              <const double*>w_extra, <const double*>bias, <const double*>b_hn,
                              <const double*>x_p, <const double*>h_p, <const double*>c_p,
                              <double*>h_out_p, <double*>c_out_p, <double*>work, B, D, H, P)
        finally:
            if work != <char*>stack:
                free(work)


cdef void _step_run(int kind, bint flag, const floating* w_ih_t, const floating* w_hh_t,
                    const floating* w_extra, const floating* bias, const floating* b_hn,
                    const floating* x, const floating* h, const floating* c, floating* h_out,
                    floating* c_out, floating* work, Py_ssize_t B, Py_ssize_t D, Py_ssize_t H,
                    Py_ssize_t P) noexcept nogil:
    """The step of cell ``kind`` (StepWeights' numbering) on raw pointers."""
    if kind == 0:
        _rnn_step(x, w_ih_t, w_hh_t, bias, h, flag, h_out, B, D, H)
    elif kind == 1:
        _lstm_step(x, w_ih_t, w_hh_t, bias, h, c, h_out, c_out, work, B, D, H)
    elif kind == 2:
        _lstm_proj_step(x, w_ih_t, w_hh_t, w_extra, bias, h, c, h_out, c_out, work,
                        work + B * LSTM_GATES * H, B, D, H, P)
    else:
        _gru_step(x, w_ih_t, w_hh_t, w_extra, bias, b_hn, h, flag, h_out, work,
                  work + B * 4 * H, B, D, H)
