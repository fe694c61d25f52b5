"""The ``fit`` table: one epoch of the seeds' Keras model in fastrnn.keras, Keras on TensorFlow and PyTorch.

The model is Embedding -> SimpleRNN -> Dense(sigmoid), binary cross-entropy,
RMSprop, on random token ids; TensorFlow and PyTorch are imported only when
their epoch is built.
"""

import numpy as np

from fastrnn._threads import num_threads_capped
from fastrnn.benchmarks.tables import format_ms, format_table
from fastrnn.benchmarks.targets import FIT_TARGETS
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["FIT_CONFIG", "fit_data", "fastrnn_fit_epoch", "keras_fit_epoch", "torch_fit_epoch", "run_fit"]

#: The seeds' Keras model and data size for the one-epoch ``fit`` benchmark.
FIT_CONFIG = dict(vocab=10_000, embedding=32, units=32, T=500, batch_size=32, samples=1_000)


def fit_data(seed=0):
    """Token ids (samples, T) and binary labels (samples,) for the fit benchmark."""
    c = FIT_CONFIG
    rng = np.random.default_rng(seed)
    x = rng.integers(1, c["vocab"], (c["samples"], c["T"]))
    y = rng.integers(0, 2, c["samples"]).astype(np.float32)
    return x, y


def fastrnn_fit_epoch(n_threads):
    """One epoch of ``fit`` of Embedding -> SimpleRNN -> Dense(sigmoid) in fastrnn.keras."""
    from fastrnn import keras

    c = FIT_CONFIG
    x, y = fit_data()
    model = keras.Sequential([keras.layers.Embedding(c["vocab"], c["embedding"]),
                              keras.layers.SimpleRNN(c["units"]),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])

    def epoch():
        with num_threads_capped(n_threads):  # fit passes no thread count
            return model.fit(x, y, batch_size=c["batch_size"], epochs=1, verbose=0)

    return epoch


def keras_fit_epoch(n_threads):
    """The same epoch in Keras on TensorFlow (its thread pools are set once per process)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(n_threads)
    except RuntimeError:  # TensorFlow already started: its pools keep their first size
        pass
    c = FIT_CONFIG
    x, y = fit_data()
    model = tf.keras.Sequential([tf.keras.layers.Embedding(c["vocab"], c["embedding"]),
                                 tf.keras.layers.SimpleRNN(c["units"]),
                                 tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile(loss="binary_crossentropy", optimizer="rmsprop", metrics=["accuracy"])

    def epoch():
        return model.fit(x, y, batch_size=c["batch_size"], epochs=1, verbose=0)

    return epoch


def torch_fit_epoch(n_threads):
    """The same model and epoch written the usual PyTorch way (Keras's RMSprop settings)."""
    import torch

    c = FIT_CONFIG
    torch.set_num_threads(n_threads)
    x, y = fit_data()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    embedding = torch.nn.Embedding(c["vocab"], c["embedding"])
    rnn = torch.nn.RNN(c["embedding"], c["units"], batch_first=True)
    dense = torch.nn.Linear(c["units"], 1)
    parameters = [*embedding.parameters(), *rnn.parameters(), *dense.parameters()]
    optimizer = torch.optim.RMSprop(parameters, lr=1e-3, alpha=0.9, eps=1e-7)
    criterion = torch.nn.BCEWithLogitsLoss()

    def epoch():
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)
        order = torch.randperm(len(x))
        for start in range(0, len(x), c["batch_size"]):
            batch = order[start:start + c["batch_size"]]
            optimizer.zero_grad()
            _, h_n = rnn(embedding(x[batch]))
            loss = criterion(dense(h_n[0])[:, 0], y[batch])
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    return epoch


def run_fit(args, out, peers):
    """Print the one-epoch ``fit`` table, fastrnn.keras against Keras/TensorFlow and PyTorch."""
    builders = {"fastrnn": fastrnn_fit_epoch}
    if "keras" in peers:
        builders["keras"] = keras_fit_epoch
    if "torch" in peers:
        builders["torch"] = torch_fit_epoch
    header = ["model", "thr", *builders, *(f"{p}/fastrnn" for p in builders if p != "fastrnn"),
              "target", "n"]
    rows = []
    for n_threads in args.threads:
        runners = {name: build(n_threads) for name, build in builders.items()}
        times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat,
                            min_rounds=3)
        ratios = {p: paired_ratio(times[p], times["fastrnn"]) for p in builders if p != "fastrnn"}
        notes = [f"{p}>={FIT_TARGETS[p] if n_threads == 1 else 1:g} "
                 f"{'ok' if r >= (FIT_TARGETS[p] if n_threads == 1 else 1) else 'MISS'}"
                 for p, r in ratios.items()]
        rows.append(["Embedding-SimpleRNN-Dense", str(n_threads),
                     *(format_ms(float(np.median(times[name]))) for name in builders),
                     *(f"{r:.2f}" for r in ratios.values()), ", ".join(notes) or "-",
                     str(len(times["fastrnn"]))])
    c = FIT_CONFIG
    print(f"\n# one fit epoch: Embedding({c['vocab']}, {c['embedding']}) -> SimpleRNN({c['units']}) "
          f"-> Dense(1, sigmoid), binary cross-entropy, RMSprop; {c['samples']} sequences of "
          f"{c['T']}, batch {c['batch_size']}; medians in ms", file=out)
    print(format_table(header, rows, args.markdown), file=out)
    out.flush()
