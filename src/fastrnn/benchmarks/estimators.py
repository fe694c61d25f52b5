"""The ``sklearn`` table: what fastrnn.sklearn's estimators add to training through fastrnn.keras.

Each row times ``RNNClassifier(...).fit(X, y)`` against the same network built as a
:class:`fastrnn.keras.Sequential`, compiled and fitted for the same epochs on the same data
and batch size, at one thread, interleaved round by round. Both sides build their network in
the timed call, as a user's script does. The estimator's extra work is the input checks, the
label encoding, drawing each epoch's sample order from ``random_state`` (a shuffled copy of
the data) and one ``fit`` call per epoch; the target is that it costs at most 5 %.
Needs scikit-learn (the ``sklearn`` extra).
"""

import time

import numpy as np

from fastrnn._threads import num_threads_capped
from fastrnn.benchmarks.tables import format_ms, format_table, target_note
from fastrnn.benchmarks.targets import SKLEARN_FIT_TARGET
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["SKLEARN_ROWS", "sklearn_data", "estimator_fit", "keras_fit", "run_sklearn"]

#: One row per network: the cell, its units, and the data (``vocab`` set: token ids through an
#: Embedding of ``embedding`` wide, else ``D`` features per step); ``classes`` 2 uses a sigmoid head.
SKLEARN_ROWS = (
    dict(name="LSTM on features", cell="lstm", units=64, T=50, D=16, vocab=None, embedding=None, classes=2),
    dict(name="GRU on token ids", cell="gru", units=32, T=100, D=None, vocab=1000, embedding=32, classes=4),
)
#: Epochs and batch size of every row (the samples come from ``--sklearn-samples``).
SKLEARN_EPOCHS, SKLEARN_BATCH = 3, 32


def sklearn_data(row, samples, seed=0):
    """``X`` (float32 features ``(samples, T, D)`` or int64 ids ``(samples, T)``) and labels
    ``0 .. classes-1`` of shape ``(samples,)``."""
    rng = np.random.default_rng(seed)
    if row["vocab"]:
        x = rng.integers(0, row["vocab"], (samples, row["T"]))
    else:
        x = rng.standard_normal((samples, row["T"], row["D"])).astype(np.float32)
    return x, rng.integers(0, row["classes"], samples)


def estimator_fit(row, x, y, shares=None):
    """A call that fits a new ``RNNClassifier`` of the row on ``(x, y)`` at one thread.

    With a list ``shares``, each call appends the share of its time spent outside building the
    network and its ``fit`` calls -- the estimator's own work, which the keras side does not
    do -- timed around those calls: a measure of the overhead that a busy machine's noise,
    which slows both parts alike, leaves readable.
    """
    from fastrnn.sklearn import RNNClassifier

    def fit():
        estimator = RNNClassifier(cell=row["cell"], hidden_sizes=row["units"], epochs=SKLEARN_EPOCHS,
                                  batch_size=SKLEARN_BATCH, vocab_size=row["vocab"],
                                  embedding_dim=row["embedding"] or 32, random_state=0, n_threads=1)
        inside = []
        if shares is not None:
            build = estimator._build_model

            def timed_build(*args):
                started = time.perf_counter()
                model = build(*args)
                inside.append(time.perf_counter() - started)  # the keras side builds the same network
                network_fit = model.fit

                def timed_fit(*fit_args, **fit_kwargs):
                    started = time.perf_counter()
                    try:
                        return network_fit(*fit_args, **fit_kwargs)
                    finally:
                        inside.append(time.perf_counter() - started)

                model.fit = timed_fit
                return model

            estimator._build_model = timed_build
        started = time.perf_counter()
        with num_threads_capped(1):
            estimator.fit(x, y)
        if shares is not None:
            total = time.perf_counter() - started
            shares.append((total - sum(inside)) / total)
            del estimator._build_model, estimator.model_.fit  # the instrumented calls go with this run
        return estimator

    return fit


def keras_fit(row, x, y):
    """A call that builds, compiles and fits the same network with fastrnn.keras at one thread."""
    from fastrnn.keras import Sequential, layers, optimizers

    cell = {"lstm": layers.LSTM, "gru": layers.GRU, "rnn": layers.SimpleRNN}[row["cell"]]
    binary = row["classes"] == 2
    targets = y.astype(np.float32)[:, None] if binary else y

    def fit():
        stack = [layers.Embedding(row["vocab"], row["embedding"], seed=1)] if row["vocab"] else []
        stack += [cell(row["units"], seed=2, n_threads=1),
                  layers.Dense(1 if binary else row["classes"], activation="sigmoid" if binary else "softmax",
                               seed=3)]
        model = Sequential(stack)
        model.compile(optimizer=optimizers.Adam(learning_rate=0.001),
                      loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy")
        with num_threads_capped(1):
            model.fit(x, targets, batch_size=SKLEARN_BATCH, epochs=SKLEARN_EPOCHS, verbose=0)
        return model

    return fit


def run_sklearn(args, out):
    """Print the ``sklearn`` table: ``RNNClassifier.fit`` against the same training in fastrnn.keras."""
    try:
        import sklearn  # noqa: F401
    except ImportError as error:
        print(f"\n# scikit-learn not available, the sklearn table is skipped ({error})", file=out)
        return
    samples = args.sklearn_samples
    header = ["model", "thr", "keras", "estimator", "keras/estimator", "target", "outside fit", "n"]
    rows = []
    for row in SKLEARN_ROWS:
        x, y = sklearn_data(row, samples)
        times = time_paired({"keras": keras_fit(row, x, y), "estimator": estimator_fit(row, x, y)},
                            time_budget=args.time_per_shape, rounds=args.repeat, min_rounds=3)
        ratio = paired_ratio(times["keras"], times["estimator"])
        shares = []
        instrumented = estimator_fit(row, x, y, shares)
        for _ in range(3):  # untimed by time_paired: the instrumented runs only measure the share
            instrumented()
        rows.append([row["name"], "1", format_ms(float(np.median(times["keras"]))),
                     format_ms(float(np.median(times["estimator"]))), f"{ratio:.3f}",
                     target_note(ratio, SKLEARN_FIT_TARGET, "keras/estimator"), f"{100 * np.median(shares):.2f} %",
                     str(len(times["keras"]))])
    print(f"\n# fastrnn.sklearn.RNNClassifier.fit against the same network compiled and fitted in fastrnn.keras: "
          f"{samples} samples, {SKLEARN_EPOCHS} epochs, batch {SKLEARN_BATCH}, Adam, 1 thread; "
          f"LSTM({SKLEARN_ROWS[0]['units']}) on (T={SKLEARN_ROWS[0]['T']}, D={SKLEARN_ROWS[0]['D']}) features, "
          f"Embedding({SKLEARN_ROWS[1]['vocab']}, {SKLEARN_ROWS[1]['embedding']}) -> GRU({SKLEARN_ROWS[1]['units']}) "
          f"on T={SKLEARN_ROWS[1]['T']} token ids; medians in ms; keras/estimator >= {SKLEARN_FIT_TARGET:g} is at "
          f"most {100 * (1 - SKLEARN_FIT_TARGET):.0f} % overhead; 'outside fit': median share of the estimator's "
          "fit spent outside building its network and the network's fastrnn.keras fit calls (3 more runs)", file=out)
    print(format_table(header, rows, args.markdown), file=out)
    out.flush()
