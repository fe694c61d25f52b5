"""The translate task's data: dates written the ways people write them, with their ISO form.

Everything is generated here with :mod:`datetime` and English month and day
names (nothing to download): :func:`human_dates` draws days
between 1950 and 2049 and writes each in one of :data:`FORMATS` (orders
day-month-year, month-day-year and year-month-day, names or numbers, several
separators, optional weekday); the target is always ``YYYY-MM-DD``.
:class:`DateCodec` turns both sides into padded arrays of character ids for an
encoder-decoder model trained with teacher forcing.
"""

import datetime

import numpy as np

__all__ = ["FORMATS", "FIRST_DAY", "N_DAYS", "human_dates", "write_date", "DateCodec"]

FIRST_DAY = datetime.date(1950, 1, 1)
"""The earliest date drawn."""

N_DAYS = (datetime.date(2050, 1, 1) - FIRST_DAY).days
"""How many days the dates are drawn from (1950-01-01 to 2049-12-31)."""

# calendar.month_name would follow the process's locale; fixed names keep the data the same everywhere
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

FORMATS = (
    "{d} {month} {Y}",          # 7 march 2031
    "{d} {mon} {Y}",            # 7 mar 2031
    "{dd} {mon} {y}",           # 07 mar 31
    "{d}{th} of {month} {Y}",   # 7th of march 2031
    "{month} {d}, {Y}",         # march 7, 2031
    "{mon} {d} {Y}",            # mar 7 2031
    "{month} {d}{th} {Y}",      # march 7th 2031
    "{weekday}, {d} {month} {Y}",   # friday, 7 march 2031
    "{wkd} {mon} {d} {Y}",      # fri mar 7 2031
    "{weekday} {month} {d}{th}, {Y}",  # friday march 7th, 2031
    "{dd}-{mm}-{Y}",            # 07-03-2031 (day first; slashes are month first below)
    "{d}.{m}.{Y}",              # 7.3.2031
    "{dd}.{mm}.{y}",            # 07.03.31
    "{mm}/{dd}/{Y}",            # 03/07/2031 (month first)
    "{m}/{d}/{y}",              # 3/7/31
    "{Y}/{mm}/{dd}",            # 2031/03/07
    "{Y}.{m}.{d}",              # 2031.3.7
    "{Y}{mm}{dd}",              # 20310307
    "{d}-{mon}-{Y}",            # 7-mar-2031
    "{mon}-{dd}-{y}",           # mar-07-31
)
"""The written forms, as :meth:`str.format` templates; two-digit years mean 1950-2049.

No written date is ambiguous: two formats never write different days the same way (day-first
numbers use ``-`` or ``.``, month-first ones ``/``), so a perfect model exists.
"""


def _ordinal_suffix(day):
    if day in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def write_date(date, template):
    """``date`` (a :class:`datetime.date`) written with one of :data:`FORMATS`, in lower case."""
    month = _MONTHS[date.month - 1]
    weekday = _DAYS[date.weekday()]
    return template.format(d=date.day, dd=f"{date.day:02d}", m=date.month, mm=f"{date.month:02d}",
                           Y=date.year, y=f"{date.year % 100:02d}", month=month, mon=month[:3],
                           weekday=weekday, wkd=weekday[:3], th=_ordinal_suffix(date.day))


def human_dates(n, rng):
    """``n`` random dates, each written in a random format, with their ISO forms.

    Parameters
    ----------
    n : int
    rng : numpy.random.Generator

    Returns
    -------
    sources : list of str
        Such as ``"fri mar 7 2031"``.
    targets : list of str
        ``"YYYY-MM-DD"``, such as ``"2031-03-07"``.
    """
    days = rng.integers(0, N_DAYS, size=n)
    formats = rng.integers(0, len(FORMATS), size=n)
    sources, targets = [], []
    for day, k in zip(days, formats):
        date = FIRST_DAY + datetime.timedelta(days=int(day))
        sources.append(write_date(date, FORMATS[k]))
        targets.append(date.isoformat())
    return sources, targets


class DateCodec:
    """Character ids of the written dates (encoder side) and of the ISO dates (decoder side).

    Id 0 is padding on both sides; the decoder side has its own small
    vocabulary (digits and ``-``) plus a start id that begins every decoder
    input (teacher forcing: the decoder reads the target shifted right by one).

    Parameters
    ----------
    sources : list of str
        The written dates whose characters make the encoder vocabulary.
    """

    TARGET_CHARS = "0123456789-"
    TARGET_LENGTH = 10  # len("YYYY-MM-DD")

    def __init__(self, sources):
        chars = sorted(set("".join(sources)))
        self.source_index = {c: i + 1 for i, c in enumerate(chars)}
        self.source_size = len(chars) + 2  # padding, then an id for characters never seen
        self.unknown = len(chars) + 1
        self.target_index = {c: i + 1 for i, c in enumerate(self.TARGET_CHARS)}
        self.start = len(self.TARGET_CHARS) + 1
        self.target_size = len(self.TARGET_CHARS) + 2
        self._target_chars = {i: c for c, i in self.target_index.items()}

    def encode_sources(self, sources, length):
        """ndarray of shape (N, length), int32: the characters' ids, zero-padded on the right."""
        ids = np.zeros((len(sources), length), dtype=np.int32)
        for row, text in enumerate(sources):
            if len(text) > length:
                raise ValueError(f"source {text!r} is longer than length={length}")
            ids[row, :len(text)] = [self.source_index.get(c, self.unknown) for c in text]
        return ids

    def encode_targets(self, targets):
        """Decoder inputs and targets for teacher forcing.

        Returns
        -------
        decoder_input : ndarray of shape (N, 10), int32
            The start id, then the target's first nine characters.
        decoder_target : ndarray of shape (N, 10), int32
        """
        target = np.array([[self.target_index[c] for c in text] for text in targets], dtype=np.int32)
        target = target.reshape(len(targets), self.TARGET_LENGTH)
        decoder_input = np.empty_like(target)
        decoder_input[:, 0] = self.start
        decoder_input[:, 1:] = target[:, :-1]
        return decoder_input, target

    def decode_targets(self, ids):
        """The strings of rows of decoder ids (ndarray of shape (N, T)); padding and start ids dropped."""
        return ["".join(self._target_chars.get(int(i), "") for i in row) for row in ids]
