"""The work partition: how a kernel's work is cut into pieces that threads take whole.

Results must not depend on the number of threads. So the work is cut into
pieces whose boundaries depend only on the problem's shape, never on
``n_threads``; threads then take whole pieces, and anything summed over pieces
is summed in piece order. Two cuts are used:

* batch chunks, for the time loop: rows of the batch are independent of each
  other through the whole sequence, so a chunk runs all ``T`` steps with no
  barrier between steps;
* time blocks, for the GEMMs over all steps (input projection, weight and input
  gradients): ``T*B`` rows of a time-major array split at step boundaries are
  contiguous row blocks.

A large layer whose batch is one chunk shares each step's product by columns
instead (:func:`step_column_threads`): every element is still computed the
same way, whichever thread computes it.

How many threads take the pieces, and how BLAS is kept to one thread meanwhile,
is :mod:`fastrnn._threads`' job. Both the Numba backend and the Cython
extension read the cuts from here.
"""

import numpy as np

# A chunk of the time loop must carry at least this many multiply-adds per step
# for a second thread to pay for itself (measured with the fused float32 LSTM
# and GRU steps: two chunks of 16 rows at H=128 run 1.5-1.9x faster on 2
# threads than one chunk, and no slower on 1).
MIN_CHUNK_WORK = 16 * 128 * 128 * 2
# Sharing one step's product by columns costs a barrier per step, which a busy
# machine makes expensive (measured: an LSTM with B=32, H=128 ran 3-6x slower
# on 2 threads than on 1 while other processes were running), so it needs this
# much more work per step than a batch chunk.
MIN_STEP_SPLIT_WORK = 32 * 256 * 256 * 4
# Chunks below this many rows make the per-step GEMM inefficient.
MIN_CHUNK_ROWS = 16
# A GEMM over all steps is cut into pieces of at least this many multiply-adds.
MIN_BLOCK_WORK = 1 << 24
# Upper bound on pieces of either kind; it bounds the threads that can help.
MAX_PIECES = 8


def _bounds(n, pieces):
    """Split ``range(n)`` into ``pieces`` near-equal parts; return the ``pieces + 1`` boundaries."""
    return np.array([n * k // pieces for k in range(pieces + 1)], dtype=np.intp)


def batch_chunks(batch, hidden, gates=1):
    """Fixed split of the batch for the time loop.

    Parameters
    ----------
    batch, hidden, gates : int
        Batch size, hidden size and gates per cell (RNN 1, GRU 3, LSTM 4).

    Returns
    -------
    ndarray of shape (n_chunks + 1,)
        Chunk ``k`` holds batch rows ``bounds[k]:bounds[k + 1]``.
    """
    work = batch * hidden * hidden * gates
    pieces = min(work // MIN_CHUNK_WORK, batch // MIN_CHUNK_ROWS, MAX_PIECES)
    return _bounds(batch, max(int(pieces), 1))


def step_column_threads(batch, hidden, gates, n_threads):
    """Threads that share the columns of each step's recurrent product.

    Used only when :func:`batch_chunks` leaves the whole batch in one chunk:
    then a large layer (``MIN_STEP_SPLIT_WORK`` multiply-adds per step) still
    gets ``n_threads``, at the cost of one synchronisation per step. Every
    output element is computed the same way by whichever thread, so results
    still do not depend on ``n_threads``.

    Returns
    -------
    int
    """
    if batch * hidden * hidden * gates < MIN_STEP_SPLIT_WORK:
        return 1
    return max(1, min(n_threads, hidden // 16))


def time_blocks(steps, batch, work_per_row):
    """Fixed split of the steps for GEMMs over all ``steps * batch`` rows.

    Parameters
    ----------
    steps, batch : int
        ``T`` and ``B``.
    work_per_row : int
        Multiply-adds per row of the GEMM (e.g. ``D * G * H`` for the input projection).

    Returns
    -------
    ndarray of shape (n_blocks + 1,)
        Block ``k`` holds steps ``bounds[k]:bounds[k + 1]``.
    """
    work = steps * batch * work_per_row
    pieces = min(work // MIN_BLOCK_WORK, steps, MAX_PIECES)
    return _bounds(steps, max(int(pieces), 1))


# The input projection is cut into pieces of at most this many workspace entries
# and half a block's steps (more rows than MIN_BLOCK_WORK asks for would not help
# the GEMM; fewer make more calls, which cost the Numba backend), grouped into
# blocks of at most this many entries and steps (and at least two pieces, so that
# threads can share a block): inference keeps the projection of one block only, so
# its workspace does not grow with T. A block ends in two synchronisations (after
# its projection and after its steps), which a busy machine makes expensive, so
# blocks are as large as memory allows.
MAX_PIECE_ENTRIES = 1 << 16
MAX_BLOCK_ENTRIES = 1 << 21
MAX_BLOCK_STEPS = 1024
MAX_BLOCK_PIECES = 32


def projection_blocks(steps, batch, inputs, columns):
    """Fixed split of the input projection ``x W_ih^T`` into pieces and blocks of steps.

    A piece is one GEMM call (or one run of slabs) over its rows, in training and in
    inference alike, so both compute every entry the same way. Every piece but the
    last holds a multiple of 4 steps, so its rows start at a multiple of 4. A block
    is a run of pieces: inference projects a block, runs its steps, then the next.

    Parameters
    ----------
    steps, batch, inputs : int
        ``T``, ``B`` and ``D``.
    columns : int
        Width of the workspace's rows (e.g. ``4H`` for an LSTM or a GRU).

    Returns
    -------
    pieces : ndarray of shape (n_pieces + 1,)
        Piece ``k`` holds steps ``pieces[k]:pieces[k + 1]``.
    blocks : ndarray of shape (n_blocks + 1,)
        Block ``j`` holds pieces ``blocks[j]:blocks[j + 1]``, so steps
        ``pieces[blocks[j]]:pieces[blocks[j + 1]]``; every block but the last has as
        many steps as the first.
    """
    batch, columns = max(int(batch), 1), max(int(columns), 1)
    rows = min(MIN_BLOCK_WORK // max(int(inputs) * columns, 1), MAX_PIECE_ENTRIES // columns,
               MAX_BLOCK_STEPS // 2 * batch)
    piece = 4 * max(1, -(-rows // (4 * batch)))
    per_block = max(2, min(MAX_BLOCK_PIECES, MAX_BLOCK_ENTRIES // (piece * batch * columns),
                           MAX_BLOCK_STEPS // piece))
    # the last bound of each arange is the first at or past the end
    pieces = np.minimum(np.arange(0, max(steps, 1) + piece, piece, dtype=np.intp), steps)
    n_pieces = len(pieces) - 1
    blocks = np.minimum(np.arange(0, n_pieces + per_block, per_block, dtype=np.intp), n_pieces)
    return pieces, blocks


def projection_spans(steps, batch, inputs, columns, workspace_steps):
    """The runs of :func:`projection_blocks` a forward kernel takes in turn.

    A workspace that holds every step (training: BPTT reads the gates of every step)
    gets one span, all pieces projected at once before the steps run; a smaller one
    (inference: ``workspace_steps`` is the first block's steps) gets one span per block.

    Returns
    -------
    pieces : ndarray of shape (n_pieces + 1,)
        As :func:`projection_blocks`.
    spans : ndarray of shape (n_spans + 1,)
        Span ``s`` holds pieces ``spans[s]:spans[s + 1]``.
    shared : bool
        Whether threads should share the pieces of a span: only if its projection
        is worth a synchronisation (``MIN_BLOCK_WORK`` multiply-adds per thread).
        It changes no result.
    """
    pieces, blocks = projection_blocks(steps, batch, inputs, columns)
    spans = blocks[[0, -1]] if workspace_steps >= steps else blocks
    span_steps = int(pieces[spans[1]])
    return pieces, spans, span_steps * batch * inputs * columns >= 2 * MIN_BLOCK_WORK


def projection_workspace_steps(steps, batch, inputs, columns, whole):
    """Steps of the projection workspace: ``steps`` if ``whole`` (training), else one block's."""
    if whole:
        return steps
    pieces, blocks = projection_blocks(steps, batch, inputs, columns)
    return int(pieces[blocks[1]])
