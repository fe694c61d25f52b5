"""Training curves of the demo's tasks as one PNG file, with matplotlib (an optional extra)."""

import math

__all__ = ["PlotUnavailableError", "require_matplotlib", "plot_curves"]


class PlotUnavailableError(ImportError):
    """``--plot`` was asked for but matplotlib is not installed."""


def require_matplotlib():
    """Import matplotlib with a file-only backend, or say how to install it.

    Called before any training, so that a missing extra fails in a second,
    not after minutes of work.

    Returns
    -------
    module
        ``matplotlib.pyplot``.

    Raises
    ------
    PlotUnavailableError
        When matplotlib cannot be imported.
    """
    try:
        import matplotlib
    except ImportError as error:
        raise PlotUnavailableError(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install fastrnn[plot])") from error
    matplotlib.use("Agg")  # no display needed: the figure only goes to a file
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves, path, title, log_y=False):
    """Draw one panel per entry of ``curves``, one line per run or split, epochs on the x axis.

    Parameters
    ----------
    curves : dict of str to dict of str to list of float
        Panel title -> line label -> one value per epoch.
    path : str or os.PathLike
        The image file to write (its extension picks the format, PNG usually).
    title : str
        Title of the whole figure.
    log_y : bool, default False
        Logarithmic y axes (for errors spanning decades).

    Returns
    -------
    str
        ``path`` as a string.
    """
    plt = require_matplotlib()
    from matplotlib.ticker import MaxNLocator

    n = max(len(curves), 1)
    columns = min(n, 3)
    rows = math.ceil(n / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.4 * rows), squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, curves.items()):
        for label, values in lines.items():
            epochs = range(1, len(values) + 1)
            constant = len(set(values)) == 1  # a baseline, not a curve
            ax.plot(epochs, values, linestyle="--" if constant else "-",
                    marker=None if constant or len(values) >= 30 else "o", markersize=3, label=label)
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)
