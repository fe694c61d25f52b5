"""Tables and their parts: the machine's description, times in milliseconds, aligned or Markdown rows."""

from fastrnn.benchmarks.machine import cpu_info

__all__ = ["cpu_name", "package_version", "format_ms", "TEXT_COLUMNS", "format_table", "target_note"]


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
