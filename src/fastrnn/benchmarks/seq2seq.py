"""The ``seq2seq`` table: one ``fit`` epoch of the translate demo's encoder-decoder with attention,
fastrnn.keras against Keras on TensorFlow.

The model is :func:`fastrnn.demo.tasks.seq2seq_model` (functional API:
Embedding(mask_zero=True) -> LSTM encoder with its states into an LSTM decoder,
dot-product Attention over the encoder outputs, Concatenate, Dense(softmax)),
built the same way in ``tf.keras`` and given fastrnn's initial weights, so both
start from the same predictions (the table shows how far apart they are). The
data are the demo's written dates (:mod:`fastrnn.demo.dates`), padded, so the
encoder's mask is exercised. TensorFlow is imported only when its epoch is built.
"""

import numpy as np

from fastrnn._threads import blas_threads, num_threads_capped
from fastrnn.benchmarks.tables import format_ms, format_table
from fastrnn.benchmarks.timing import paired_ratio, time_paired

__all__ = ["SEQ2SEQ_CONFIG", "seq2seq_data", "fastrnn_seq2seq", "keras_seq2seq", "run_seq2seq"]

#: Sizes of the benchmarked model and epoch (``source_length`` is the padded length of the dates).
SEQ2SEQ_CONFIG = dict(units=64, embedding=16, source_length=30, batch_size=64, samples=1024)


def seq2seq_data(config=None, seed=0):
    """The demo's dates as model inputs.

    Returns
    -------
    inputs : list of two ndarrays
        Source ids (samples, source_length) and decoder inputs (samples, 10), int32.
    targets : ndarray of shape (samples, 10), int32
    sizes : tuple of int
        Source and target vocabulary sizes.
    """
    from fastrnn.demo import dates

    c = config or SEQ2SEQ_CONFIG
    sources, targets = dates.human_dates(c["samples"], np.random.default_rng(seed))
    codec = dates.DateCodec(sources)
    decoder_input, y = codec.encode_targets(targets)
    return [codec.encode_sources(sources, c["source_length"]), decoder_input], y, (codec.source_size,
                                                                                   codec.target_size)


def _compile(model, optimizers):
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizers.Adam(0.01, clipnorm=1.0),
                  metrics=["accuracy"])


def fastrnn_seq2seq(config=None):
    """The demo's model in fastrnn.keras (seeded), compiled, with the data; ``(model, x, y)``."""
    from fastrnn import keras
    from fastrnn.demo.tasks import seq2seq_model

    c = config or SEQ2SEQ_CONFIG
    x, y, (source_size, target_size) = seq2seq_data(c)
    model = seq2seq_model(source_size, target_size, c["units"], "lstm", True, seeds=(1, 2, 3, 4, 5),
                          embedding=c["embedding"])
    _compile(model, keras.optimizers)
    return model, x, y


def keras_seq2seq(reference, n_threads, config=None):
    """The same model in Keras on TensorFlow, with ``reference``'s weights (a fastrnn.keras model).

    Returns None when TensorFlow's thread pools already run at another size
    than ``n_threads`` (they are set once per process).
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n_threads)
        tf.config.threading.set_inter_op_parallelism_threads(n_threads)
    except RuntimeError:  # TensorFlow already started: its pools keep their first size
        pass
    if (tf.config.threading.get_intra_op_parallelism_threads() != n_threads
            or tf.config.threading.get_inter_op_parallelism_threads() != n_threads):
        return None
    keras, layers = tf.keras, tf.keras.layers
    c = config or SEQ2SEQ_CONFIG
    by_name = {layer.name: layer for layer in reference.layers}  # fastrnn's Model has no get_layer
    source_size = by_name["source_embedding"].input_dim
    target_size = by_name["target_embedding"].input_dim
    source = keras.Input((None,), dtype="int32", name="source")
    decoder_input = keras.Input((None,), dtype="int32", name="decoder_input")
    embedded = layers.Embedding(source_size, c["embedding"], mask_zero=True, name="source_embedding")(source)
    encoder_outputs, *states = layers.LSTM(c["units"], return_sequences=True, return_state=True,
                                           name="encoder")(embedded)
    embedded_target = layers.Embedding(target_size, c["embedding"], mask_zero=True,
                                       name="target_embedding")(decoder_input)
    decoded = layers.LSTM(c["units"], return_sequences=True, name="decoder")(embedded_target,
                                                                            initial_state=states)
    context = layers.Attention(name="attention")([decoded, encoder_outputs])
    decoded = layers.Concatenate(name="decoder_and_context")([decoded, context])
    probabilities = layers.Dense(target_size, activation="softmax", name="next_char")(decoded)
    model = keras.Model([source, decoder_input], probabilities)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    _compile(model, keras.optimizers)
    return model


def run_seq2seq(args, out, with_keras=True, config=None):
    """Print the ``seq2seq`` table: one fit epoch in fastrnn.keras against Keras on TensorFlow.

    Parameters
    ----------
    args : argparse.Namespace
        ``threads``, ``time_per_shape``, ``repeat`` and ``markdown`` of the command line.
    out : file-like
    with_keras : bool
        Compare with Keras (TensorFlow installed and not turned off).
    config : dict, optional
        Sizes instead of :data:`SEQ2SEQ_CONFIG` (the smoke test's tiny ones).
    """
    c = config or SEQ2SEQ_CONFIG
    header = ["model", "thr", "fastrnn", *(["keras", "keras/fastrnn", "max|dp|"] if with_keras else []), "n"]
    rows = []
    for n_threads in args.threads:
        model, x, y = fastrnn_seq2seq(c)

        def fastrnn_epoch(model=model, x=x, y=y, n_threads=n_threads):
            # fit passes no thread count; the Dense, Attention and Concatenate layers run NumPy, whose
            # BLAS would otherwise use every core (TensorFlow's pools are held to n_threads too)
            with num_threads_capped(n_threads), blas_threads.limit(n_threads):
                return model.fit(x, y, batch_size=c["batch_size"], epochs=1, verbose=0)

        runners = {"fastrnn": fastrnn_epoch}
        peer = keras_seq2seq(model, n_threads, c) if with_keras else None
        if peer is not None:
            # before any training: the same weights must give the same probabilities
            probe = [part[:c["batch_size"]] for part in x]
            difference = float(np.max(np.abs(np.asarray(peer(probe, training=False))
                                             - model.predict(probe, verbose=0))))
            runners["keras"] = lambda peer=peer, x=x, y=y: peer.fit(x, y, batch_size=c["batch_size"],
                                                                     epochs=1, verbose=0)
        times = time_paired(runners, time_budget=args.time_per_shape, rounds=args.repeat, min_rounds=3)
        row = ["seq2seq-attention-lstm", str(n_threads), format_ms(float(np.median(times["fastrnn"])))]
        if with_keras:
            if peer is None:
                row += ["-", "-", "-"]  # TensorFlow's pools run at another thread count
            else:
                row += [format_ms(float(np.median(times["keras"]))),
                        f"{paired_ratio(times['keras'], times['fastrnn']):.2f}", f"{difference:.1e}"]
        rows.append(row + [str(len(times["fastrnn"]))])
    print(f"\n# one fit epoch of the translate demo's encoder-decoder: Embedding(mask_zero) -> "
          f"LSTM({c['units']}) encoder, states into an LSTM({c['units']}) decoder, Attention over the "
          f"encoder outputs, Concatenate, Dense(softmax); Adam; {c['samples']} dates padded to "
          f"{c['source_length']} characters, 10 target steps, batch {c['batch_size']}; medians in ms; "
          f"max|dp|: largest difference of the initial predictions (same weights); thr: fastrnn's "
          f"n_threads and NumPy's BLAS threads, TensorFlow's intra- and inter-op pools (set once per "
          f"process: a '-' row ran at another count)", file=out)
    print(format_table(header, rows, args.markdown), file=out)
    out.flush()
