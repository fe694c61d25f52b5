"""Costs in proportion to the work: thread counts capped at the cores, model files whose
declared sizes cannot make a small file cost much memory."""

import io
import json
import time
import tracemalloc
import zipfile
from dataclasses import replace

import numpy as np
import pytest

import fastrnn
from fastrnn import keras
from fastrnn.keras import layers, model_file, saving
from fastrnn.keras.exceptions import ModelFileError
from conformance.cases import Case, backend_marks
from conformance.cells import CELLS, require
from conftest import ALL_BACKENDS
from fastrnn import _partition as partition
from fastrnn import _threads

CASE = Case("memory", seed=61, T=5, B=3, D=4, H=6, P=3)
CELL_BACKENDS = [pytest.param(cell, backend, marks=backend_marks(backend), id=f"{cell.id}-{backend}")
                 for cell in CELLS for backend in ALL_BACKENDS]


# -- thread counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell, backend", CELL_BACKENDS)
def test_n_threads_above_the_cores_runs_with_one_per_core(cell, backend, monkeypatch):
    """``n_threads=512`` on a machine of 2 cores used to start 513 threads; now the kernels get
    the core count, and the results are those of one thread bit for bit."""
    require(cell, backend)
    arrays = {name: value for name, value in CASE.arrays(cell, np.float64).items() if name in cell.inputs}
    monkeypatch.setattr(_threads, "available_cores", lambda: 2)
    module = cell.kernel_module(backend)
    seen = []
    kernel = getattr(module, cell.kernel)

    def recording(*args):
        seen.append(args[-1])  # every kernel takes the thread count last
        return kernel(*args)

    monkeypatch.setattr(module, cell.kernel, recording)
    y, states, _ = cell.forward(arrays, backend, n_threads=512, requires_grad=False)
    assert seen == [2]
    y_one, states_one, _ = cell.forward(arrays, backend, n_threads=1, requires_grad=False)
    np.testing.assert_array_equal(y, y_one)
    for name in states:
        np.testing.assert_array_equal(states[name], states_one[name])


def test_set_num_threads_caps_at_the_cores(monkeypatch):
    monkeypatch.setattr(_threads, "available_cores", lambda: 3)
    monkeypatch.setattr(_threads, "_thread_cap", None)
    assert fastrnn.get_num_threads() == 3
    fastrnn.set_num_threads(512)
    assert fastrnn.get_num_threads() == 3
    fastrnn.set_num_threads(2)
    assert fastrnn.get_num_threads() == 2
    for bad in (0, -1, True, 2.0, 2**31):
        with pytest.raises(fastrnn.ArgumentError, match=r"\bn_threads must be None or an integer from 1"):
            fastrnn.set_num_threads(bad)
    assert fastrnn.get_num_threads() == 2
    fastrnn.set_num_threads(None)
    assert fastrnn.get_num_threads() == 3


# -- inference memory ------------------------------------------------------------------------------


PROBE = Case("probe", seed=62, T=20_000, B=1, D=8, H=8, P=4)
SLACK = 64 << 10  # packed weights, biases and per-step temporaries: O(B*H + (D + H)*G*H) entries


def workspace_columns(cell):
    """Width of the rows of the projection workspace: the LSTMs' and GRU's gates are 4H wide
    (the GRU's keep ``\\hat n`` beside its three gates); the Elman cell projects into ``y``."""
    return 0 if cell.gates == 1 else 4 * PROBE.H


def peak_of(call):
    """``(result, peak bytes traced during call() beyond what was allocated before)``."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = call()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("cell, backend", CELL_BACKENDS)
def test_inference_allocates_nothing_of_the_size_of_T_beyond_the_outputs(cell, backend):
    """At T=20000, B=1, H=8 inference used to allocate the gates of every step (LSTM: 5x the output,
    GRU 5x, 8x on the reference backend, projected LSTM 9x). Now the bound is the outputs, one
    block of the input projection and one piece of it (their steps fixed by the shape, not T)
    and a constant."""
    require(cell, backend)
    arrays = {name: value for name, value in PROBE.arrays(cell, np.float32).items() if name in cell.inputs}
    # compile and warm up on the same code paths (two blocks) first
    cell.forward(dict(arrays, x=arrays["x"][:2500]), backend, requires_grad=False)
    (y, states, cache), peak = peak_of(lambda: cell.forward(arrays, backend, requires_grad=False))
    assert cache is None
    T, B, D = arrays["x"].shape
    W = workspace_columns(cell)
    block = partition.projection_workspace_steps(T, B, D, W, False) if W else 0
    # the block does not grow with T, and any temporary of T steps of H units would break the bound
    assert block == (partition.projection_workspace_steps(10 * T, B, D, W, False) if W else 0)
    # one piece more: NumPy's matmul writes into the GRU's strided projection through a buffer
    pieces, _ = partition.projection_blocks(T, B, D, W)
    workspace = (block + pieces[1]) * B * W * y.itemsize
    assert workspace + SLACK < T * B * PROBE.H * y.itemsize
    bound = y.nbytes + sum(state.nbytes for state in states.values()) + workspace + SLACK
    assert peak <= bound, f"peak {peak} bytes, bound {bound} (y {y.nbytes})"


# -- the blocked input projection: training and inference compute it alike ----------------------------


@pytest.fixture
def small_blocks(monkeypatch):
    """Pieces of 4 steps and blocks of 2 pieces (8 steps), so that short sequences span several blocks."""
    monkeypatch.setattr(partition, "MAX_PIECE_ENTRIES", 1)
    monkeypatch.setattr(partition, "MAX_BLOCK_ENTRIES", 1)


def assert_same_outputs(expected, got, what):
    y, states, _ = got
    np.testing.assert_array_equal(y, expected[0], err_msg=what)
    for name, state in expected[1].items():
        np.testing.assert_array_equal(states[name], state, err_msg=f"{what}: {name}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("T, B", [(23, 1), (21, 3), (30, 5), (8, 5), (3, 2)])
@pytest.mark.parametrize("cell, backend", CELL_BACKENDS)
def test_blocked_inference_is_bit_identical_to_training(cell, backend, T, B, dtype, small_blocks):
    """Inference projects and runs a block of steps at a time; training projects every step first.
    Both make the same GEMM calls on the same rows, so y and the final states agree bit for bit,
    for any n_threads, with B not a multiple of 4 and T not a multiple of a piece or a block."""
    require(cell, backend)
    case = replace(CASE, name=f"blocks-{T}-{B}", T=T, B=B, D=3, H=5, P=2)
    arrays = {name: value for name, value in case.arrays(cell, dtype).items() if name in cell.inputs}
    pieces, blocks = partition.projection_blocks(T, B, 3, 4 * 5)
    assert len(pieces) - 1 == -(-T // 4)
    training = cell.forward(arrays, backend, n_threads=1, requires_grad=True)
    for requires_grad, n_threads in ((True, 2), (False, 1), (False, 2)):
        assert_same_outputs(training, cell.forward(arrays, backend, n_threads=n_threads,
                                                   requires_grad=requires_grad),
                            f"requires_grad={requires_grad}, n_threads={n_threads}")
    if cell.cell_state:  # ends: every cell state is kept while the gates are kept a block at a time
        ends = np.arange(B) * T // max(B - 1, 1)
        with_ends = cell.forward(arrays, backend, n_threads=1, requires_grad=True, ends=ends)
        assert_same_outputs(with_ends, cell.forward(arrays, backend, n_threads=2, requires_grad=False,
                                                    ends=ends), "ends")


@pytest.mark.parametrize("cell, backend", CELL_BACKENDS)
def test_inference_spanning_blocks_of_the_real_partition_is_bit_identical(cell, backend):
    """The same with the package's own block sizes: T=2500, B=3, H=8 spans two blocks."""
    require(cell, backend)
    case = replace(PROBE, name="two-blocks", T=2500, B=3)
    arrays = {name: value for name, value in case.arrays(cell, np.float32).items() if name in cell.inputs}
    if cell.gates > 1:
        _, blocks = partition.projection_blocks(2500, 3, case.D, 4 * case.H)
        assert len(blocks) - 1 >= 2
    training = cell.forward(arrays, backend, n_threads=1, requires_grad=True)
    assert_same_outputs(training, cell.forward(arrays, backend, n_threads=2, requires_grad=False),
                        "inference")


# -- model files -----------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """``(document, entries, write)``: a small saved model's JSON document and entries (name -> bytes),
    and ``write(name, document, entries, deflated=())`` that zips them into a new file."""
    model = keras.Sequential([layers.Embedding(10, 4, seed=0), layers.LSTM(3, seed=1)])
    model.build((None, 5))
    path = tmp_path / "good.fastrnn"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(entries.pop(model_file.CONFIG_ENTRY))

    def write(name, document, entries, deflated=()):
        target = tmp_path / name
        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr(model_file.CONFIG_ENTRY, json.dumps(document))
            for entry, data in entries.items():
                archive.writestr(entry, data, zipfile.ZIP_DEFLATED if entry in deflated else zipfile.ZIP_STORED)
        return target

    return document, entries, write


def npy_header(shape, dtype="<f4"):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def load_peak(path):
    """``(error, peak bytes NumPy and Python allocated, seconds)`` of ``load_model(path)``."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ModelFileError) as error:
            saving.load_model(path)
        return error.value, tracemalloc.get_traced_memory()[1], time.perf_counter() - start
    finally:
        tracemalloc.stop()


PEAK_LIMIT = 4 << 20  # far below the inflated sizes below, far above a small model's own needs


def test_an_entry_larger_than_its_declared_array_is_refused_before_decompressing(saved):
    """A 50 MB entry of zeros deflates to about 50 KB; the model says it holds a (10, 4) array."""
    document, entries, write = saved
    entry = document["weights"][0]["entry"]
    path = write("bomb.fastrnn", document, dict(entries, **{entry: npy_header((12_500_000,)) + bytes(50_000_000)}),
                 deflated={entry})
    error, peak, _ = load_peak(path)
    assert f"entry {entry} declares 50000128 bytes; its array takes 160 bytes" in str(error)
    assert peak < PEAK_LIMIT


def test_an_npy_header_that_disagrees_with_the_declared_shape_is_refused_unread(saved):
    """The entry's size fits the declared (10, 4) float32, but its header claims a huge array."""
    document, entries, write = saved
    entry = document["weights"][0]["entry"]
    data = npy_header((10**12,)) + bytes(160)
    path = write("header.fastrnn", document, dict(entries, **{entry: data}))
    error, peak, _ = load_peak(path)
    assert "holds an array of shape (1000000000000,)" in str(error) and "says (10, 4)" in str(error)
    assert peak < PEAK_LIMIT


def test_a_config_declaring_a_huge_layer_is_refused_before_building_it(saved):
    """Embedding(input_dim=5e7) with a (10, 4) weight entry: the layer is never allocated (it took 4.6 GiB)."""
    document, entries, write = saved
    for layer in document["model"]["config"]["layers"]:
        if layer["class_name"] == "Embedding":
            layer["config"]["input_dim"] = 50_000_000
    path = write("huge.fastrnn", document, entries)
    error, peak, seconds = load_peak(path)
    assert "ask for more weight values than the file's" in str(error)
    assert peak < PEAK_LIMIT and seconds < 5


def test_a_consistent_file_still_loads_bit_for_bit(saved, tmp_path):
    """The checks refuse nothing a fastrnn save writes, nor the same entries deflated."""
    document, entries, write = saved
    original = saving.load_model(tmp_path / "good.fastrnn")
    again = saving.load_model(write("deflated.fastrnn", document, entries, deflated=set(entries)))
    for ours, theirs in zip(original.get_weights(), again.get_weights()):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("shape, dtype", [([10, -4], "<f4"), ("10", "<f4"), ([10, True], "<f4"), ([10, 4], "|O"),
                                          ([10, 4], "nonsense")])
def test_a_declared_shape_or_dtype_that_is_no_arrays_is_refused(saved, shape, dtype):
    document, entries, write = saved
    document["weights"][0].update(shape=shape, dtype=dtype)
    error, _, _ = load_peak(write("declared.fastrnn", document, entries))
    assert f"entry {document['weights'][0]['entry']} declares" in str(error)


def test_a_model_description_larger_than_the_cap_is_refused_unread(saved, monkeypatch):
    document, entries, write = saved
    path = write("long.fastrnn", dict(document, padding="x" * 5000), entries)
    monkeypatch.setattr(model_file, "MAX_DOCUMENT_BYTES", 4096)
    error, _, _ = load_peak(path)
    assert f"{model_file.CONFIG_ENTRY} declares" in str(error) and "at most 4096" in str(error)
