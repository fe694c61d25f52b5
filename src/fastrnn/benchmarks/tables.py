"""Tables and their parts: the machine's description, times in milliseconds, aligned or Markdown rows."""

import sys

import numpy as np

from fastrnn.benchmarks.machine import cpu_info

__all__ = ["cpu_name", "package_version", "format_ms", "TEXT_COLUMNS", "format_table", "target_note", "target_notes", "timed_rows",
           "ratio_summary_lines"]


def cpu_name():
    """The CPU's model name (``/proc/cpuinfo``, else ``lscpu``, else what :mod:`platform` knows)."""
    return cpu_info().describe()


def package_version(package):
    """The installed version of ``package``, or ``"not installed"``."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def format_ms(seconds):
    """Milliseconds with three significant digits, without exponent notation."""
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    for limit, digits in ((100, 0), (10, 1), (1, 2)):
        if ms >= limit:
            return f"{ms:.{digits}f}"
    return f"{ms:.3f}"


#: Columns of words rather than numbers, wherever they stand: aligned left.
TEXT_COLUMNS = ("best", "best peer", "target", "step", "same bits")


def format_table(header, rows, markdown, left_columns=5):
    """Rows of cells as aligned plain text, or as Markdown; numbers are right-aligned.

    The first ``left_columns`` columns and those named in :data:`TEXT_COLUMNS` are aligned left.
    """
    left = [i < left_columns or name in TEXT_COLUMNS for i, name in enumerate(header)]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if is_left else "---:" for is_left in left) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    fmt = "  ".join(f"{{:{'<' if is_left else '>'}{w}}}" for is_left, w in zip(left, widths))
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)


def target_note(value, target, label):
    """``"label>=target ok"`` (or ``MISS``) for a measured ratio ``value``; None without a target."""
    if target is None or value is None:
        return None
    return f"{label}>={target:g} {'ok' if value >= target else 'MISS'}"


def target_notes(ratios, targets):
    """A row's target verdicts, one per target: ``"f32/int8>=3 ok"``, ``"f32/bf16: not available on
    this CPU"``, ``"f32/bf16>=1.5 not timed"``.

    Parameters
    ----------
    ratios : dict of str to (float or None)
        The row's measured ratios by name.
    targets : dict of str to (float or str)
        The target of each ratio, or a note where the CPU has none.

    Returns
    -------
    list of str
    """
    notes = []
    for name, target in targets.items():
        if isinstance(target, str):
            notes.append(f"{name}: {target}")
        else:
            notes.append(target_note(ratios.get(name), target, name) or f"{name}>={target:g} not timed")
    return notes


def timed_rows(label, cells, shapes, threads, make_row):
    """Every row of a table, one per cell, shape and thread count, with a progress line on a terminal.

    Parameters
    ----------
    label : str
        Named in the progress line (``"precision"``).
    cells, shapes, threads : list
    make_row : callable
        ``make_row(cell, shape_name, n_threads)`` times one row and returns it.

    Returns
    -------
    list
    """
    rows = []
    for cell in cells:
        for name in shapes:
            for n_threads in threads:
                if sys.stderr.isatty():
                    print(f"\r\033[K# timing {label} {cell} {name}, {n_threads} thread(s) ...", end="",
                          file=sys.stderr, flush=True)
                rows.append(make_row(cell, name, n_threads))
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    return rows


def ratio_summary_lines(rows, names):
    """Per ratio of ``names`` and thread count: median and lowest over the rows, and the targets met.

    ``rows`` have ``n_threads``, ``ratios`` (name -> float or None) and ``targets`` (name -> float, or
    a note where the CPU has no target).
    """
    lines = []
    for name in names:
        for n_threads in sorted({row.n_threads for row in rows}):
            values = [row.ratios[name] for row in rows
                      if row.n_threads == n_threads and row.ratios.get(name) is not None]
            if not values:
                continue
            targeted = [row for row in rows if row.n_threads == n_threads and row.ratios.get(name) is not None
                        and isinstance(row.targets.get(name), float)]
            met = sum(row.ratios[name] >= row.targets[name] for row in targeted)
            lines.append(f"{name}, {n_threads} thread(s): median over {len(values)} rows "
                         f"{float(np.median(values)):.2f}, lowest {min(values):.2f}"
                         + (f"; targets met in {met} of {len(targeted)} rows" if targeted else ""))
    return lines
