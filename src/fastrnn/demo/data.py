"""The demo's data sets, built from what ships with Python itself (no download), as NumPy arrays.

Four sources, one per task of ``python -m fastrnn demo``:

- English sentences from the documentation text CPython ships in
  :mod:`pydoc_data.topics`, and the same words shuffled (word order task);
- Python source files of the standard library, every character tagged with
  the kind of token :mod:`tokenize` puts it in (tagging task);
- the same documentation text as a character stream (language model task);
- the adding problem, random sequences made here (memory task).

Every function is deterministic given its ``rng`` (a
:class:`numpy.random.Generator`) and its arguments. Token ids are ``int32``,
index 0 is always padding, and arrays are batch first.
"""

import io
import keyword
import os
import re
import sysconfig
import tokenize
from collections import Counter

import numpy as np

__all__ = [
    "doc_text", "squeeze_whitespace", "doc_sentences", "shuffled", "WordEncoder", "order_pairs", "bag_of_words",
    "TAG_NAMES", "tag_source", "stdlib_sources", "CharEncoder", "tagging_windows",
    "language_model_windows", "adding_problem",
]


# --------------------------------------------------------------------------------------
# the documentation text
# --------------------------------------------------------------------------------------
def doc_text():
    """The documentation text that CPython ships for ``help()``, topics in sorted order.

    Returns
    -------
    str
        About 465,000 characters (Python 3.11) of reStructuredText rendered as plain text.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def squeeze_whitespace(text):
    """The text with heading underlines dropped, lines stripped and runs of spaces made one.

    The documentation's indentation and column-aligned tables are long runs of
    spaces; a character model would otherwise spend its effort on them.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
        Lines joined by ``"\n"``, at most one blank line in a row.
    """
    lines = [" ".join(line.split()) for line in text.split("\n") if not _UNDERLINE.fullmatch(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


# A block that holds grammar (``::=``), an interactive session or a table is code, not prose.
_CODE_BLOCK = re.compile(r"::=|>>>|\|")
# An underline of a heading: ``*****``, ``=====``, ...
_UNDERLINE = re.compile(r"\s*([*=\-~^])\1{2,}\s*")
_BULLET = re.compile(r"^(?:\*|-|\d+\.)\s+")
# A sentence ends at . ! ? or : followed by a capital (or an opening quote/bracket/emphasis).
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z\"“(*])")
# Inline literals (``"len()"``) and emphasis (``*name*``) stand for one word in prose.
_LITERAL = re.compile(r"\"[^\"\s]{1,40}\"|\*[A-Za-z]+\*")
# A run of letters with optional surrounding quotes/brackets and trailing punctuation.
_PLAIN_WORD = re.compile(r"[(\"“*]*[A-Za-z]+(?:['’-][A-Za-z]+)*[)\"”*]*[.,;:!?]?[)\"”]*")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _is_prose(sentence):
    """Whether at least 90 % of the whitespace-separated pieces are plain words."""
    pieces = _LITERAL.sub("x", sentence).split()
    plain = sum(1 for piece in pieces if _PLAIN_WORD.fullmatch(piece))
    return plain >= 0.9 * len(pieces)


def doc_sentences(min_words=5, max_words=40, text=None):
    """English sentences of the documentation text, as lowercase word tokens.

    Blocks of code, grammar, interactive sessions and tables are dropped, then
    each paragraph is split into sentences; a sentence is kept when it starts
    with a capital, ends with ``. ! ? :``, is at least 90 % plain words, and
    has ``min_words`` to ``max_words`` words of which at least 4 differ (so a
    shuffle can change it). Duplicates are kept once, first occurrence first.

    Parameters
    ----------
    min_words, max_words : int
    text : str, optional
        Defaults to :func:`doc_text`.

    Returns
    -------
    list of tuple of str
        About 2,000 sentences for Python 3.11, in the order of the text.
    """
    text = doc_text() if text is None else text
    seen = {}
    for block in re.split(r"\n\s*\n", text):
        if _CODE_BLOCK.search(block):
            continue
        lines = [line.strip() for line in block.split("\n") if not _UNDERLINE.fullmatch(line)]
        paragraph = _BULLET.sub("", " ".join(lines))
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = sentence.strip()
            if not sentence or not sentence[0].isupper() or sentence[-1] not in ".!?:":
                continue
            if not _is_prose(sentence):
                continue
            words = tuple(_WORD.findall(sentence.lower()))
            if min_words <= len(words) <= max_words and len(set(words)) >= 4:
                seen.setdefault(words, None)
    return list(seen)


def shuffled(words, rng):
    """The same words in a random order that differs from the given one.

    Parameters
    ----------
    words : sequence of str
        At least two different words.
    rng : numpy.random.Generator

    Returns
    -------
    tuple of str
    """
    words = tuple(words)
    if len(set(words)) < 2:
        raise ValueError(f"a shuffle can only change a sentence of two or more different words; got {words!r}")
    while True:
        candidate = tuple(words[i] for i in rng.permutation(len(words)))
        if candidate != words:
            return candidate


class WordEncoder:
    """Word ids for the order task: the most frequent words, other words by their suffix.

    Keeping only a small vocabulary of frequent (mostly function) words makes
    memorising whole sentences hard and learning word order easy; a rare word
    keeps a hint of its part of speech through its suffix.

    Ids: 0 padding, 1 a rare word with no known suffix, ``2 .. 2+n_words-1``
    the frequent words, then one id per suffix in :attr:`SUFFIXES`.

    Parameters
    ----------
    sentences : list of sequence of str
        Where the word frequencies are counted (the training sentences).
    n_words : int
        How many frequent words get an id of their own.
    """

    SUFFIXES = ("s", "ed", "ing", "ly", "tion", "er", "al", "able", "ive", "ent")

    def __init__(self, sentences, n_words):
        counts = Counter(word for sentence in sentences for word in sentence)
        # ties broken by the word, so the ids do not depend on the order of the sentences
        frequent = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n_words]
        self.index = {word: i + 2 for i, (word, _) in enumerate(frequent)}
        self.first_suffix_id = 2 + len(self.index)

    @property
    def size(self):
        """Number of ids, padding included (the Embedding's ``input_dim``)."""
        return self.first_suffix_id + len(self.SUFFIXES)

    def word_id(self, word):
        """The id of one word."""
        found = self.index.get(word)
        if found is not None:
            return found
        for i, suffix in enumerate(self.SUFFIXES):
            if word.endswith(suffix):
                return self.first_suffix_id + i
        return 1

    def encode(self, sentences, maxlen):
        """Sentences as rows of ids, padded and truncated at the front, like Keras's ``pad_sequences``.

        Parameters
        ----------
        sentences : list of sequence of str
        maxlen : int

        Returns
        -------
        ndarray of int32 of shape (N, maxlen)
            The last ``maxlen`` words of each sentence, right-aligned after zeros.
        """
        out = np.zeros((len(sentences), maxlen), dtype=np.int32)
        for row, sentence in enumerate(sentences):
            ids = [self.word_id(word) for word in sentence][-maxlen:]
            if ids:
                out[row, maxlen - len(ids):] = ids
        return out


def order_pairs(sentences, shuffles, rng):
    """Each sentence (label 1) next to shuffles of its words (label 0), balanced.

    Parameters
    ----------
    sentences : list of sequence of str
    shuffles : int
        Negatives per sentence; the sentence itself is repeated as many times,
        so that both classes are equally frequent and hold the same words.
    rng : numpy.random.Generator

    Returns
    -------
    texts : list of tuple of str
        ``2 * shuffles * len(sentences)`` word sequences.
    labels : ndarray of float32 of shape (2 * shuffles * len(sentences),)
        1.0 for a real sentence, 0.0 for a shuffled one.
    """
    texts, labels = [], []
    for sentence in sentences:
        for _ in range(shuffles):
            texts.append(tuple(sentence))
            texts.append(shuffled(sentence, rng))
            labels += [1.0, 0.0]
    return texts, np.asarray(labels, dtype=np.float32)


def bag_of_words(ids, size):
    """Word counts of each row, order thrown away.

    Parameters
    ----------
    ids : ndarray of int of shape (N, T)
        0 is padding and is not counted.
    size : int
        Number of ids.

    Returns
    -------
    ndarray of float32 of shape (N, size)
        ``counts[n, w]`` is how often id ``w`` occurs in row ``n`` (column 0 stays 0).
    """
    ids = np.asarray(ids)
    counts = np.zeros((len(ids), size), dtype=np.float32)
    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    np.add.at(counts, (rows, ids.reshape(-1)), 1.0)
    counts[:, 0] = 0.0
    return counts


# --------------------------------------------------------------------------------------
# Python source, tagged by tokenize
# --------------------------------------------------------------------------------------
TAG_NAMES = ("other", "name", "keyword", "string", "comment", "number", "operator")
"""The character classes of the tagging task, in id order (0 = whitespace and the rest)."""

_TAG = {name: i for i, name in enumerate(TAG_NAMES)}
_TOKEN_TAG = {tokenize.STRING: _TAG["string"], tokenize.COMMENT: _TAG["comment"],
              tokenize.NUMBER: _TAG["number"], tokenize.OP: _TAG["operator"]}
# Python 3.12 splits f-strings into pieces; they are all string characters
for _name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END"):
    if hasattr(tokenize, _name):
        _TOKEN_TAG[getattr(tokenize, _name)] = _TAG["string"]


def tag_source(source):
    """The token class of every character of a Python source, as :mod:`tokenize` sees it.

    ``NAME`` tokens are ``keyword`` when :func:`keyword.iskeyword` says so (soft
    keywords such as ``match`` stay names), ``STRING``/``COMMENT``/``NUMBER``/``OP``
    give their class, and everything else (whitespace, newlines, indentation)
    is ``other``.

    Parameters
    ----------
    source : str
        Source that tokenizes without error.

    Returns
    -------
    ndarray of int8 of shape (len(source),)
        Ids into :data:`TAG_NAMES`.

    Raises
    ------
    tokenize.TokenError, SyntaxError
        When ``source`` cannot be tokenized.
    """
    tags = np.zeros(len(source), dtype=np.int8)
    # offset of the first character of each line (tokenize's rows start at 1)
    # (not str.splitlines: it also breaks at form feeds and other separators that tokenize does not)
    line_starts = [0]
    for line in io.StringIO(source):
        line_starts.append(line_starts[-1] + len(line))
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME:
            tag = _TAG["keyword"] if keyword.iskeyword(token.string) else _TAG["name"]
        else:
            tag = _TOKEN_TAG.get(token.type)
        if tag is None:
            continue
        (row0, col0), (row1, col1) = token.start, token.end
        start = line_starts[row0 - 1] + col0
        end = line_starts[row1 - 1] + col1
        tags[start:end] = tag
    return tags


def stdlib_sources(n_files, min_chars=2_000, max_chars=60_000, directory=None):
    """Deterministic choice of Python sources from the standard library, with their tags.

    The ``.py`` files directly in the standard library directory, sorted by
    name, of ``min_chars`` to ``max_chars`` characters, that decode as UTF-8
    and tokenize; ``n_files`` of them spread evenly over the sorted list (a
    file that does not read or tokenize is replaced by the next one).

    Parameters
    ----------
    n_files : int
    min_chars, max_chars : int
    directory : str, optional
        Defaults to ``sysconfig.get_paths()["stdlib"]``.

    Returns
    -------
    list of tuple (str, str, ndarray of int8 of shape (len(source),))
        ``(file name, source, tags)``.
    """
    directory = directory or sysconfig.get_paths()["stdlib"]
    candidates = []
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".py") or not os.path.isfile(path):
            continue
        if min_chars <= os.path.getsize(path) <= max_chars:
            candidates.append(name)
    if not candidates:
        raise FileNotFoundError(f"no .py file of {min_chars}..{max_chars} bytes in {directory}")
    sources = []
    for start in np.linspace(0, len(candidates), n_files, endpoint=False).astype(int):
        # the evenly spread file, or the next one when it does not read or tokenize
        for name in candidates[start:]:
            if any(name == taken for taken, _, _ in sources):
                continue
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as file:
                    source = file.read()
                tags = tag_source(source)
            except (UnicodeDecodeError, SyntaxError, tokenize.TokenError):
                continue
            sources.append((name, source, tags))
            break
    return sources


# --------------------------------------------------------------------------------------
# characters
# --------------------------------------------------------------------------------------
class CharEncoder:
    """Character ids: 0 padding, 1 a rare character, 2.. the frequent ones by frequency.

    Parameters
    ----------
    texts : list of str
        Where the character frequencies are counted.
    max_chars : int, optional
        Keep at most this many characters (the most frequent).
    min_count : int, default 1
        Keep only characters seen at least this often.
    """

    def __init__(self, texts, max_chars=None, min_count=1):
        counts = Counter()
        for text in texts:
            counts.update(text)
        frequent = [c for c, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                    if n >= min_count][:max_chars]
        self.chars = ["", "\ufffd"] + frequent
        self.index = {c: i + 2 for i, c in enumerate(frequent)}

    @property
    def size(self):
        """Number of ids, padding included."""
        return len(self.chars)

    def encode(self, text):
        """ndarray of int32 of shape (len(text),): the id of each character."""
        return np.fromiter((self.index.get(c, 1) for c in text), dtype=np.int32, count=len(text))

    def decode(self, ids):
        """The text of a sequence of ids (padding dropped, rare characters as U+FFFD)."""
        return "".join(self.chars[i] for i in np.asarray(ids).reshape(-1) if i != 0)


def tagging_windows(ids, tags, length):
    """Cut one tagged character stream into consecutive windows, the last one padded.

    Parameters
    ----------
    ids : ndarray of int of shape (L,)
        Character ids (never 0).
    tags : ndarray of int of shape (L,)
    length : int

    Returns
    -------
    x : ndarray of int32 of shape (ceil(L / length), length)
        Ids, 0 after the end of the stream.
    y : ndarray of int32 of shape (ceil(L / length), length)
        Tags, 0 after the end of the stream (masked out by the model).
    """
    n = -(-len(ids) // length)
    x = np.zeros(n * length, dtype=np.int32)
    y = np.zeros(n * length, dtype=np.int32)
    x[:len(ids)] = ids
    y[:len(tags)] = tags
    return x.reshape(n, length), y.reshape(n, length)


def language_model_windows(ids, length, step=None):
    """Inputs and next-character targets from one stream of ids.

    Parameters
    ----------
    ids : ndarray of int of shape (L,)
    length : int
        Steps per window.
    step : int, optional
        Distance between the starts of two windows; ``length`` (no overlap) by default.

    Returns
    -------
    x : ndarray of int32 of shape (N, length)
        ``ids[s : s + length]`` for each start ``s``.
    y : ndarray of int32 of shape (N, length)
        ``ids[s + 1 : s + length + 1]``: the character that follows each input.
    """
    ids = np.asarray(ids, dtype=np.int32)
    step = step or length
    starts = np.arange(0, len(ids) - length, step)
    offsets = np.arange(length)
    x = ids[starts[:, None] + offsets]
    y = ids[starts[:, None] + offsets + 1]
    return x, y


# --------------------------------------------------------------------------------------
# the adding problem
# --------------------------------------------------------------------------------------
def adding_problem(n, length, rng):
    """The adding problem of Hochreiter & Schmidhuber: remember two marked values for a long time.

    Channel 0 holds values drawn from U(0, 1); channel 1 is 1.0 at two
    positions, one in the first half of the sequence and one in the second,
    and 0 elsewhere. The target is the sum of the two marked values, whose
    mean is 1.0 and variance 1/6: always answering 1.0 has an expected MSE of
    about 0.167.

    Parameters
    ----------
    n : int
        Number of sequences.
    length : int
        Steps per sequence, at least 2.
    rng : numpy.random.Generator

    Returns
    -------
    x : ndarray of float32 of shape (n, length, 2)
    y : ndarray of float32 of shape (n, 1)
    """
    if length < 2:
        raise ValueError(f"the adding problem needs sequences of at least 2 steps; got length={length}")
    values = rng.random((n, length)).astype(np.float32)
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length), dtype=np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[rows, first] + values[rows, second])[:, None].astype(np.float32)
    return x, y
