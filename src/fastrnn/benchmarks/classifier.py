"""The classifier table: one training step of a whole fastrnn.nn model against the same model in PyTorch.

The model is the text classifier of the README's "Coming from PyTorch":
``Embedding(10000, 128) -> LSTM(128, 256) -> last step -> Linear(256, 2)``, batch 32 of
100 tokens. One step is forward, cross-entropy loss, backward through every module
(``model.backward`` in fastrnn, autograd in torch) and an Adam update of every parameter
(the embedding's dense, in both). Both sides start from the same weights and tokens, in
float32, with the same thread count; timing is :func:`fastrnn.benchmarks.timing.time_paired`.
"""

import numpy as np

from fastrnn.benchmarks.tables import format_ms, format_table
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["CLASSIFIER", "classifier_problem", "fastrnn_classifier_step", "torch_classifier_step",
           "run_classifier"]

#: The timed model and batch.
CLASSIFIER = dict(vocabulary=10000, embedding=128, hidden=256, classes=2, batch=32, steps=100)


def classifier_problem(vocabulary, embedding, hidden, classes, batch, steps, seed=0):
    """Sizes, tokens of shape (batch, steps) and targets of shape (batch,) of one benchmark."""
    rng = np.random.default_rng(seed)
    return {"sizes": (vocabulary, embedding, hidden, classes),
            "tokens": rng.integers(0, vocabulary, (batch, steps)),
            "target": rng.integers(0, classes, batch)}


def fastrnn_classifier_step(problem, n_threads):
    """A no-argument callable doing one training step in fastrnn; and the model (its weights
    are what :func:`torch_classifier_step` copies)."""
    from fastrnn import nn, optim

    V, E, H, C = problem["sizes"]
    model = nn.Sequential(nn.Embedding(V, E, seed=0), nn.LSTM(E, H, batch_first=True, seed=1, n_threads=n_threads),
                          nn.LastStep(batch_first=True), nn.Linear(H, C, seed=2))
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    tokens, target = problem["tokens"], problem["target"]

    def step():
        optimizer.zero_grad()
        loss = criterion(model(tokens), target)
        model.backward(criterion.backward())
        optimizer.step()
        return float(loss)

    return step, model


def torch_classifier_step(problem, n_threads, initial_state):
    """The same step in PyTorch, from ``initial_state`` (the fastrnn model's state dict)."""
    import torch

    torch.set_num_threads(n_threads)
    V, E, H, C = problem["sizes"]
    # a ModuleList named like the fastrnn Sequential, so the state dict loads as is
    layers = torch.nn.ModuleList([torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, batch_first=True),
                                  torch.nn.Identity(), torch.nn.Linear(H, C)])
    layers.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in initial_state.items()})
    optimizer = torch.optim.Adam(layers.parameters(), lr=1e-3)
    tokens, target = torch.from_numpy(problem["tokens"]), torch.from_numpy(problem["target"])

    def step():
        if torch.get_num_threads() != n_threads:
            torch.set_num_threads(n_threads)
        optimizer.zero_grad()
        output, _ = layers[1](layers[0](tokens))
        loss = torch.nn.functional.cross_entropy(layers[3](output[:, -1]), target)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def run_classifier(args, out, with_torch, sizes=None):
    """Print the classifier table for ``args.threads`` (see :func:`fastrnn.benchmarks.cli.run`)."""
    sizes = CLASSIFIER if sizes is None else sizes
    header = ["model", "thr", "fastrnn", *(["torch", "torch/fastrnn"] if with_torch else []), "n"]
    rows = []
    for n_threads in args.threads:
        problem = classifier_problem(**sizes)
        step, model = fastrnn_classifier_step(problem, n_threads)
        runners = {"fastrnn": step}
        if with_torch:
            runners["torch"] = torch_classifier_step(problem, n_threads, model.state_dict())
        times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat)
        name = (f"Embedding({sizes['vocabulary']},{sizes['embedding']})-LSTM({sizes['hidden']})-"
                f"Linear({sizes['classes']}) B={sizes['batch']} T={sizes['steps']}")
        row = [name, str(n_threads), format_ms(float(np.median(times["fastrnn"])))]
        if with_torch:
            row += [format_ms(float(np.median(times["torch"]))), f"{paired_ratio(times['torch'], times['fastrnn']):.2f}"]
        rows.append(row + [str(len(times["fastrnn"]))])
    print("\n# classifier training step: forward, cross-entropy, backward, Adam; float32; medians in ms",
          file=out)
    print(format_table(header, rows, args.markdown), file=out)
    out.flush()
