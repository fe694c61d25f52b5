"""Benchmarks of whole training steps: fastrnn's modules and optimizer against PyTorch's.

One step is what a training loop repeats: forward through a 2-layer
bidirectional LSTM or GRU, a mean-squared-error loss against a fixed target,
the backward pass, and an Adam update of every parameter. Both sides start
from the same weights, inputs and targets, in float32, with the same thread
count; the timing (alternated, paired rounds) is :func:`fastrnn.benchmark.time_paired`.
``python -m fastrnn bench`` prints this table after the cells' table.
"""

import numpy as np

from fastrnn.benchmark import SHAPES, _format_ms, _format_table, paired_ratio, time_paired

__all__ = ["TRAINING_MODELS", "TRAINING_SHAPES", "TRAINING_TARGET", "training_problem",
           "fastrnn_training_step", "torch_training_step", "lengths_runners", "run_training"]

#: The models timed: cell name -> (fastrnn.nn class name, torch.nn class name).
TRAINING_MODELS = {"lstm": "LSTM", "gru": "GRU"}
TRAINING_SHAPES = ("S1", "S4")
NUM_LAYERS = 2
#: torch time / fastrnn time a step must reach at 1 thread.
TRAINING_TARGET = 2.0
#: Most that variable lengths may add to a forward+backward of the same padded batch.
LENGTHS_COST_TARGET = 1.10


def training_problem(cell, shape, seed=0):
    """Module configuration, input and target of one training benchmark.

    Returns
    -------
    dict
        ``module`` (constructor keyword arguments), ``cls`` (class name),
        ``x`` (ndarray of shape (T, B, D)) and ``target`` (ndarray of shape
        (T, B, 2*H)), float32.
    """
    s = SHAPES[shape]
    rng = np.random.default_rng(seed)
    return {
        "cls": TRAINING_MODELS[cell],
        "module": dict(input_size=s.D, hidden_size=s.H, num_layers=NUM_LAYERS, bidirectional=True),
        "x": rng.standard_normal((s.T, s.B, s.D)).astype(np.float32),
        "target": rng.standard_normal((s.T, s.B, 2 * s.H)).astype(np.float32),
    }


def fastrnn_training_step(problem, n_threads, backend=None):
    """A no-argument callable doing one training step with fastrnn.nn, fastrnn.optim and fastrnn.losses.

    Returns
    -------
    step : callable
        Returns the loss.
    module : fastrnn.nn.LSTM or fastrnn.nn.GRU
        Its initial weights are what :func:`torch_training_step` copies.
    """
    from fastrnn import losses, nn, optim

    module = getattr(nn, problem["cls"])(**problem["module"], seed=0, backend=backend,
                                         n_threads=n_threads)
    optimizer = optim.Adam(module.parameters(), lr=1e-3)
    criterion = losses.MSELoss()
    x, target = problem["x"], problem["target"]

    def step():
        optimizer.zero_grad()
        output, _ = module(x)
        loss = criterion(output, target)
        module.backward(criterion.backward())
        optimizer.step()
        return loss

    return step, module


def torch_training_step(problem, n_threads, initial_state):
    """The same training step in PyTorch, from the weights in ``initial_state`` (a state dict of arrays)."""
    import torch

    torch.set_num_threads(n_threads)
    module = getattr(torch.nn, problem["cls"])(**problem["module"])
    module.load_state_dict({name: torch.from_numpy(np.array(value))
                            for name, value in initial_state.items()})
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    criterion = torch.nn.MSELoss()
    x, target = torch.from_numpy(problem["x"]), torch.from_numpy(problem["target"])

    def step():
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)
        optimizer.zero_grad()
        output, _ = module(x)
        loss = criterion(output, target)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def lengths_runners(problem, n_threads):
    """Forward+backward of one module on a padded batch, without and with random ``lengths``.

    Returns
    -------
    dict of str to callable
        ``"full"`` and ``"lengths"``.
    """
    from fastrnn import nn

    module = getattr(nn, problem["cls"])(**problem["module"], seed=0, n_threads=n_threads)
    x, d_output = problem["x"], problem["target"]
    T, B, _ = x.shape
    lengths = np.random.default_rng(1).integers(1, T + 1, B)

    def full():
        module(x)
        return module.backward(d_output)

    def with_lengths():
        module(x, lengths=lengths)
        return module.backward(d_output)

    return {"full": full, "lengths": with_lengths}


#: The seeds' Keras model and data size for the one-epoch ``fit`` benchmark.
FIT_CONFIG = dict(vocab=10_000, embedding=32, units=32, T=500, batch_size=32, samples=1_000)
#: Peer time / fastrnn time one fit epoch must reach at 1 thread.
FIT_TARGETS = {"keras": 3.0, "torch": 2.0}


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
        with _threads_limited(n_threads):
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


def _threads_limited(n_threads):
    """``fastrnn.set_num_threads(n_threads)`` for the duration of a block (``fit`` passes no count)."""
    from fastrnn._threads import num_threads_capped

    return num_threads_capped(n_threads)


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
                     *(_format_ms(float(np.median(times[name]))) for name in builders),
                     *(f"{r:.2f}" for r in ratios.values()), ", ".join(notes) or "-",
                     str(len(times["fastrnn"]))])
    c = FIT_CONFIG
    print(f"\n# one fit epoch: Embedding({c['vocab']}, {c['embedding']}) -> SimpleRNN({c['units']}) "
          f"-> Dense(1, sigmoid), binary cross-entropy, RMSprop; {c['samples']} sequences of "
          f"{c['T']}, batch {c['batch_size']}; medians in ms", file=out)
    print(_format_table(header, rows, args.markdown), file=out)
    out.flush()


def run_training(args, out, with_torch):
    """Print the training-step table for ``args.threads`` (see :func:`fastrnn.benchmark.run`)."""
    header = ["model", "shape", "T,B,D,H", "thr", "fastrnn", *(["torch", "torch/fastrnn", "target"]
                                                              if with_torch else []), "n"]
    rows = []
    for cell in TRAINING_MODELS:
        for shape in TRAINING_SHAPES:
            for n_threads in args.threads:
                problem = training_problem(cell, shape)
                step, module = fastrnn_training_step(problem, n_threads)
                runners = {"fastrnn": step}
                if with_torch:
                    runners["torch"] = torch_training_step(problem, n_threads, module.state_dict())
                times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat)
                s = SHAPES[shape]
                row = [f"2-layer bidir {TRAINING_MODELS[cell]}", shape, f"{s.T},{s.B},{s.D},{s.H}",
                       str(n_threads), _format_ms(float(np.median(times["fastrnn"])))]
                if with_torch:
                    ratio = paired_ratio(times["torch"], times["fastrnn"])
                    target = TRAINING_TARGET if n_threads == 1 else 1.0
                    row += [_format_ms(float(np.median(times["torch"]))), f"{ratio:.2f}",
                            f">={target:g} {'ok' if ratio >= target else 'MISS'}"]
                rows.append(row + [str(len(times["fastrnn"]))])
    print("\n# training step: forward, MSE loss, backward, Adam update; float32; medians in ms",
          file=out)
    print(_format_table(header, rows, args.markdown), file=out)
    out.flush()

    header = ["model", "shape", "T,B,D,H", "thr", "no lengths", "lengths", "lengths/no lengths",
              "target", "n"]
    rows = []
    for cell in TRAINING_MODELS:
        for shape in TRAINING_SHAPES:
            times = time_paired(lengths_runners(training_problem(cell, shape), 1),
                                time_budget=args.time_per_shape, rounds=args.repeat)
            cost = paired_ratio(times["lengths"], times["full"])
            s = SHAPES[shape]
            rows.append([f"2-layer bidir {TRAINING_MODELS[cell]}", shape, f"{s.T},{s.B},{s.D},{s.H}",
                         "1", _format_ms(float(np.median(times["full"]))),
                         _format_ms(float(np.median(times["lengths"]))), f"{cost:.2f}",
                         f"<={LENGTHS_COST_TARGET:g} {'ok' if cost <= LENGTHS_COST_TARGET else 'MISS'}",
                         str(len(times["full"]))])
    print("\n# variable lengths (random, 1..T) against the same padded batch without them: module "
          "forward+backward; float32; medians in ms", file=out)
    print(_format_table(header, rows, args.markdown), file=out)
    out.flush()
