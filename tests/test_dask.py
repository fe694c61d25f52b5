"""fastrnn.dask: predict over dask arrays on every scheduler, data-parallel fit on dask.distributed.

One LocalCluster of two single-threaded worker processes serves the whole module
(starting one costs seconds); the fault test, which kills one of its workers, runs last.
Every test skips when dask or distributed is not installed.
"""

import os
import signal
import threading

import numpy as np
import pytest

from fastrnn import nn, optim
from fastrnn.exceptions import ArgumentError, ShapeError
from helpers import assert_close
from tolerances import INVARIANT

FLOAT32_REORDERED = INVARIANT[np.dtype(np.float32)]


@pytest.fixture(scope="module")
def da():
    pytest.importorskip("dask")
    import dask.array

    return dask.array


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def features(n=20, T=5, D=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, T, D)).astype(np.float32)


def reference_output(module, x, lengths=None):
    """The module's output in one call in this process (batch first)."""
    with nn.no_grad():
        return module(x, lengths=lengths)[0]


# -- predict ----------------------------------------------------------------------------------

@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
def test_predict_is_lazy_with_the_chunks_of_x_and_equals_one_call(da, scheduler):
    from fastrnn.dask import predict

    module = nn.GRU(3, 4, batch_first=True, seed=1)
    x = features()
    lengths = np.array([5, 1, 0, 3] * 5)
    result = predict(module, da.from_array(x, chunks=(6, 5, 3)), lengths=da.from_array(lengths, chunks=6))
    assert result.shape == (20, 5, 4) and result.dtype == np.float32
    assert result.chunks == ((6, 6, 6, 2), (5,), (4,))
    np.testing.assert_array_equal(result.compute(scheduler=scheduler), reference_output(module, x, lengths))


def test_predict_of_a_time_major_module_and_a_keras_model_on_token_ids(da):
    from fastrnn import keras
    from fastrnn.dask import predict
    from fastrnn.keras import layers

    module = nn.LSTM(3, 4, seed=2)  # time major: predict still takes and gives batch-first arrays
    x = features()
    expected = np.swapaxes(reference_output(module, np.swapaxes(x, 0, 1)), 0, 1)
    np.testing.assert_array_equal(predict(module, da.from_array(x, chunks=7)).compute(), expected)

    model = keras.Sequential([layers.Embedding(11, 4), layers.SimpleRNN(5), layers.Dense(2)])
    ids = np.random.default_rng(3).integers(0, 11, (9, 6))
    result = predict(model, da.from_array(ids, chunks=(4, 6)), batch_size=3)
    assert result.chunks == ((3, 3, 3), (2,))
    np.testing.assert_array_equal(result.compute(), model(ids))


def test_predict_refuses_other_chunkings_and_arguments_with_a_clear_message(da):
    from fastrnn.dask import predict

    module = nn.RNN(3, 4, batch_first=True)
    x = features()
    with pytest.raises(ShapeError, match=r"axis 1 has 2 chunks.*rechunk"):
        predict(module, da.from_array(x, chunks=(5, 3, 3)))
    with pytest.raises(ArgumentError, match="dask array"):
        predict(module, x)
    with pytest.raises(ShapeError, match="lengths must have shape"):
        predict(module, da.from_array(x, chunks=5), lengths=da.ones(3, chunks=3, dtype=int))
    with pytest.raises(ArgumentError, match="fastrnn.nn module"):
        predict(object(), da.from_array(x, chunks=5))


def test_predict_reads_a_memory_map_chunk_by_chunk_and_zarr_lazily(da, tmp_path):
    from fastrnn.dask import predict

    module = nn.LSTM(3, 4, batch_first=True, seed=4)
    x = features(n=24)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")

    class Reads:
        """A memory map that records every read."""

        def __init__(self, array):
            self.array, self.shape, self.dtype, self.ndim, self.reads = array, array.shape, array.dtype, 3, []

        def __getitem__(self, key):
            self.reads.append(key)
            return np.asarray(self.array[key])

    source = Reads(mapped)
    result = predict(module, da.from_array(source, chunks=(6, 5, 3), asarray=False))
    source.reads.clear()  # the probe runs on zeros, but building the array may peek
    np.testing.assert_array_equal(result.compute(scheduler="threads"), reference_output(module, x))
    rows = sorted(len(range(*key[0].indices(24))) for key in source.reads)
    assert rows == [6, 6, 6, 6], f"reads were {source.reads}"  # one read per chunk, none whole

    zarr = pytest.importorskip("zarr")
    stored = zarr.open_array(str(tmp_path / "x.zarr"), mode="w", shape=x.shape, chunks=(8, 5, 3), dtype="f4")
    stored[...] = x
    lazy = predict(module, da.from_zarr(str(tmp_path / "x.zarr")))
    assert lazy.numblocks == (3, 1, 1)
    np.testing.assert_array_equal(lazy[8:16].compute(), reference_output(module, x[8:16]))


def test_predict_leaves_the_callers_model_alone_and_divides_the_cores_among_running_tasks(da):
    import dask

    from fastrnn import _threads
    from fastrnn.dask import _Running, predict, task_threads

    module = nn.LSTM(3, 4, batch_first=True, seed=5, n_threads=2)
    predict(module, da.from_array(features(), chunks=5)).compute(scheduler="threads")
    assert module.n_threads == 2 and module.training

    cores = _threads.available_cores()
    barrier = threading.Barrier(2, timeout=30)

    def two_at_once():
        with _Running():
            barrier.wait()
            seen = task_threads()
            barrier.wait()
            return seen

    with _Running():
        alone = task_threads()
    together = dask.compute(dask.delayed(two_at_once)(), dask.delayed(two_at_once)(),
                            scheduler="threads", num_workers=2)
    assert alone == cores
    assert together == (max(1, cores // 2),) * 2


# -- on the distributed cluster ---------------------------------------------------------------

def test_predict_on_the_cluster_unpickles_the_model_once_per_worker(da, client, tmp_path):
    from fastrnn.dask import predict, task_threads

    log = str(tmp_path / "unpickles.txt")

    class CountingLSTM(nn.LSTM):  # defined here so that it travels by value to the workers
        def __setstate__(self, state):
            super().__setstate__(state)
            with open(self.log, "a") as file:
                file.write(f"{os.getpid()}\n")

    module = CountingLSTM(3, 4, batch_first=True, seed=6)
    module.log = log
    x = features(n=40)
    result = predict(module, da.from_array(x, chunks=(4, 5, 3)))  # 10 chunks
    np.testing.assert_array_equal(client.compute(result).result(), reference_output(module, x))
    with open(log) as file:
        pids = [int(line) for line in file if int(line) != os.getpid()]
    workers = set(client.run(os.getpid).values())
    assert set(pids) <= workers and len(pids) == len(set(pids)), f"unpickled by {pids}; workers {workers}"
    # a single-threaded worker running its one task gives it its one thread
    assert client.submit(task_threads, pure=False).result() == 1


def trained_alone(x, y, batch_size, epochs, lr=0.05):
    """The same training in this process: the reference of fit."""
    from fastrnn.losses import MSELoss

    module = nn.LSTM(3, 2, batch_first=True, seed=7)
    optimizer, loss = optim.Adam(module.parameters(), lr=lr), MSELoss()
    losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(x), batch_size):
            module.zero_grad()
            total += loss(module(x[start:start + batch_size])[0], y[start:start + batch_size]) * len(
                x[start:start + batch_size])
            module.backward(loss.backward())
            optimizer.step()
        losses.append(total / len(x))
    return module, losses


def trained_on_the_cluster(client, x, y, batch_size, epochs, lr=0.05, **options):
    from fastrnn.dask import fit
    from fastrnn.losses import MSELoss

    module = nn.LSTM(3, 2, batch_first=True, seed=7)
    history = fit(module, x, y, client=client, batch_size=batch_size, epochs=epochs,
                  optimizer=optim.Adam(module.parameters(), lr=lr), loss=MSELoss(), verbose=0, **options)
    return module, history


def training_data(n=30):
    x = features(n=n, seed=8)
    y = np.tanh(np.cumsum(x[..., :2], axis=1)).astype(np.float32)
    return x, y


def test_fit_equals_training_in_one_process_and_repeats_bit_for_bit(da, client):
    x, y = training_data()
    first, history = trained_on_the_cluster(client, x, y, batch_size=8, epochs=2)
    again, _ = trained_on_the_cluster(client, da.from_array(x, chunks=10), da.from_array(y, chunks=10),
                                      batch_size=8, epochs=2)
    alone, losses = trained_alone(x, y, batch_size=8, epochs=2)
    for (name, parameter), other, reference in zip(first.named_parameters(), again.parameters(),
                                                   alone.parameters()):
        np.testing.assert_array_equal(parameter.data, other.data, err_msg=name)
        assert_close(parameter.data, reference.data, FLOAT32_REORDERED, "fit on 2 workers", name)
    assert history.epoch == [0, 1] and len(history.step_seconds) == 8
    assert_close(history.history["loss"], losses, FLOAT32_REORDERED, "fit on 2 workers", "loss per epoch")
    assert losses[1] < losses[0]


def test_fit_resumes_from_its_checkpoint(da, client, tmp_path):
    x, y = training_data()
    path = str(tmp_path / "fit.ckpt")
    stops = []

    class Stop(Exception):
        pass

    def stop_after_five(step):
        if step == 4:
            stops.append(step)
            raise Stop

    with pytest.raises(Stop):
        trained_on_the_cluster(client, x, y, batch_size=8, epochs=2, checkpoint=path, checkpoint_every=2,
                               on_step=stop_after_five)
    resumed, history = trained_on_the_cluster(client, x, y, batch_size=8, epochs=2, checkpoint=path,
                                              checkpoint_every=2)
    straight, expected = trained_on_the_cluster(client, x, y, batch_size=8, epochs=2)
    assert stops == [4] and len(history.step_seconds) == 4  # steps 5-8 run again (the last checkpoint: 4)
    for parameter, other in zip(resumed.parameters(), straight.parameters()):
        np.testing.assert_array_equal(parameter.data, other.data)
    assert history.history == expected.history


def test_fit_refuses_bad_arguments_before_running(client):
    from fastrnn.dask import fit
    from fastrnn.losses import MSELoss

    x, y = training_data()
    module = nn.LSTM(3, 2, batch_first=True)
    optimizer = optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(ArgumentError, match="batch_size"):
        fit(module, x, y, client=client, batch_size=0, optimizer=optimizer, loss=MSELoss())
    with pytest.raises(ShapeError, match="same number of samples"):
        fit(module, x, y[:5], client=client, batch_size=4, optimizer=optimizer, loss=MSELoss())
    with pytest.raises(ArgumentError, match="model.parameters"):
        fit(module, x, y, client=client, batch_size=4, loss=MSELoss(),
            optimizer=optim.SGD(nn.LSTM(3, 2).parameters(), lr=0.1))
    with pytest.raises(ArgumentError, match="client"):
        fit(module, x, y, client=None, batch_size=4, optimizer=optimizer, loss=MSELoss())


def test_fit_survives_a_worker_killed_mid_epoch_with_the_same_result(da, client):
    x, y = training_data()
    killed = []

    def kill_a_worker(step):
        if step == 2:  # mid-epoch: each epoch has 4 steps
            pid = sorted(client.run(os.getpid).values())[-1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    # n_parts fixed: the clean run may start while the nanny is still restarting the killed worker
    faulty, history = trained_on_the_cluster(client, x, y, batch_size=8, epochs=2, n_parts=2,
                                             on_step=kill_a_worker)
    clean, expected = trained_on_the_cluster(client, x, y, batch_size=8, epochs=2, n_parts=2)
    assert killed and killed[0] not in client.run(os.getpid).values()
    for parameter, other in zip(faulty.parameters(), clean.parameters()):
        np.testing.assert_array_equal(parameter.data, other.data)
    assert history.history == expected.history


def test_the_readme_example_runs(tmp_path, monkeypatch):
    import pathlib
    import re

    pytest.importorskip("distributed")
    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## On Dask", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]  # the scikit-learn subsection's follows
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})


def test_without_dask_the_error_names_the_extra(monkeypatch):
    import builtins

    from fastrnn import dask as fastrnn_dask

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ImportError(f"{name} hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError, match=r'fastrnn\.dask\.predict needs dask: install the "dask" extra'):
        fastrnn_dask.predict(nn.RNN(2, 2), None)
    with pytest.raises(ImportError, match=r"fastrnn\.dask\.fit needs (dask|distributed)"):
        fastrnn_dask.fit(nn.RNN(2, 2), None, None, client=None, batch_size=1, optimizer=None, loss=None)
