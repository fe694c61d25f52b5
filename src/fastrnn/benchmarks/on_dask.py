"""The Dask tables: :func:`fastrnn.dask.predict` and :func:`fastrnn.dask.fit` on a LocalCluster.

* predict: sequences per second of a one-layer LSTM over a dask array already held by
  the workers (the time of ``predict(model, x).sum().compute()``), on 1 and 2 worker
  processes of one thread each, against the same model called batch by batch in this
  process on the cluster's total threads;
* training: samples per second of data-parallel training (MSE, Adam) on 1 and 2
  workers, each step split into compute (the slowest part's forward+backward on its
  worker) and communication (the rest of the step's wall time: shipping the weights,
  scheduling, gathering and summing the gradients, the optimizer step).

Each cluster is started, warmed up (one untimed run) and closed per row; times are
medians over ``repeat`` runs. Needs the ``dask`` extra.
"""

import time

import numpy as np

from fastrnn.benchmarks.grid import SHAPES
from fastrnn.benchmarks.tables import format_table, target_note

__all__ = ["WORKERS", "predict_rows", "training_rows", "run_dask"]

#: Worker processes of the LocalClusters timed (one thread each).
WORKERS = (1, 2)
#: Issue 16's targets on 2 workers: predict against one process on 2 threads, training against 1 worker.
PREDICT_TARGET, TRAINING_TARGET = 0.9, 1.6


def _shape(shape):
    """A shape of the grid by name, or a :class:`~fastrnn.benchmarks.grid.Shape` as given (smoke tests)."""
    return SHAPES[shape] if isinstance(shape, str) else shape


def _cluster(n_workers):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=50)
    return cluster, Client(cluster)


def _median_seconds(function, repeat):
    function()  # warm-up: first calls compile, workers load the model
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def predict_rows(shape, n_sequences, repeat=3, workers=WORKERS):
    """Rows ``[where, workers, seconds, sequences/s, vs one process, target]`` of the predict table."""
    import dask.array as da
    from distributed import wait

    from fastrnn import nn
    from fastrnn.dask import predict

    s = _shape(shape)
    model = nn.LSTM(s.D, s.H, batch_first=True, seed=0)
    threads = max(workers)
    chunk = s.B
    batch = np.random.default_rng(0).standard_normal((s.B, s.T, s.D)).astype(np.float32)
    alone = nn.LSTM(s.D, s.H, batch_first=True, seed=0, n_threads=threads).eval()

    def in_one_process():
        with nn.no_grad():
            for start in range(0, n_sequences, chunk):
                alone(batch[:min(chunk, n_sequences - start)])

    base = _median_seconds(in_one_process, repeat)
    rows = [["one process", f"{threads} thr", f"{base:.3f}", f"{n_sequences / base:.0f}", "1.00", "-"]]
    for n_workers in workers:
        cluster, client = _cluster(n_workers)
        try:
            # the data is made on the workers and kept there, as if read from their storage
            x = da.random.default_rng(0).standard_normal((n_sequences, s.T, s.D), chunks=(chunk, s.T, s.D),
                                                         dtype=np.float32)
            x = client.persist(x)
            wait(x)
            seconds = _median_seconds(lambda: predict(model, x).sum().compute(), repeat)
        finally:
            client.close()
            cluster.close()
        note = target_note(base / seconds, PREDICT_TARGET, "vs one process") if n_workers == threads else None
        rows.append(["LocalCluster", f"{n_workers} x 1 thr", f"{seconds:.3f}", f"{n_sequences / seconds:.0f}",
                     f"{base / seconds:.2f}", note or "-"])
    return rows


def training_rows(shape, global_batch, steps, workers=WORKERS):
    """Rows ``[workers, samples/s, step ms, compute ms, communication ms, speed-up, target]`` of the
    training table: medians over ``steps`` timed steps after one untimed epoch."""
    from fastrnn import nn, optim
    from fastrnn.dask import fit
    from fastrnn.losses import MSELoss

    s = _shape(shape)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((global_batch * steps, s.T, s.D)).astype(np.float32)
    y = rng.standard_normal((global_batch * steps, s.T, s.H)).astype(np.float32)
    rows, first = [], None
    for n_workers in workers:
        cluster, client = _cluster(n_workers)
        try:
            model = nn.LSTM(s.D, s.H, batch_first=True, seed=0)
            history = fit(model, x, y, client=client, batch_size=global_batch, epochs=2,
                          optimizer=optim.Adam(model.parameters(), lr=1e-3), loss=MSELoss(), verbose=0)
        finally:
            client.close()
            cluster.close()
        timed = np.array(history.step_seconds[steps:])  # the second epoch: workers warm
        wall, compute = np.median(timed[:, 0]), np.median(timed[:, 1])
        rate = global_batch / wall
        first = first or rate
        note = target_note(rate / first, TRAINING_TARGET, "vs 1 worker") if n_workers == 2 else None
        rows.append([f"{n_workers} x 1 thr", f"{rate:.1f}", f"{wall * 1e3:.0f}", f"{compute * 1e3:.0f}",
                     f"{(wall - compute) * 1e3:.0f}", f"{rate / first:.2f}", note or "-"])
    return rows


def run_dask(args, out):
    """Print the Dask tables (see :func:`fastrnn.benchmarks.cli.run`)."""
    try:
        import distributed  # noqa: F401
    except ImportError as error:
        print(f"\n# dask.distributed not available, the dask tables skipped ({error}); install the "
              "'dask' extra", file=out)
        return
    shapes = args.dask_shapes
    for shape in shapes:
        s = _shape(shape)
        rows = predict_rows(shape, args.dask_sequences, repeat=args.repeat or 3)
        print(f"\n# fastrnn.dask.predict, 1-layer LSTM {s.name} (T,B,D,H = {s.T},{s.B},{s.D},{s.H}), "
              f"{args.dask_sequences} sequences in chunks of {s.B}; medians", file=out)
        print(format_table(["where", "workers", "seconds", "sequences/s", "vs one process", "target"], rows,
                           args.markdown, left_columns=2), file=out)
        rows = training_rows(shape, args.dask_global_batch, args.dask_steps)
        print(f"\n# fastrnn.dask.fit, 1-layer LSTM {s.name}, global batch {args.dask_global_batch}, MSE + "
              f"Adam; medians over {args.dask_steps} steps after a warm-up epoch; communication = step "
              "wall time - slowest part's compute", file=out)
        print(format_table(["workers", "samples/s", "step ms", "compute ms", "communication ms", "vs 1 worker",
                            "target"],
                           rows, args.markdown, left_columns=1), file=out)
        out.flush()
