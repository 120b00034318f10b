"""GNU parallel's batch syntax, read: input sources and replacement strings (docs/batches.md).

Pure: no I/O. The command line's words from the first separator on are split into input
sources (``:::`` values, ``::::`` files, each linked with ``+`` to the one before); the
sources' values make the batch's jobs in GNU parallel's order (the last source varies
fastest; linked sources go together, as far as the shortest), made one at a time on demand,
never all at once. Each job's command is the template (PROG and its ARGs) with the
replacement strings filled in, or the job's values added at the end when there are none.
"""

import math
import os
import re

from sieci.client.joblog import BatchError
from sieci.defaults import EXIT_USAGE

SEPARATORS = {":::": (False, False), ":::+": (False, True), "::::": (True, False), "::::+": (True, True)}
NOT_RUN = "sieci does not run it (docs/batches.md lists what it does)"

# {}, {.}, {/}, {//}, {/.}, {#}, {%}, and the positional {N}, {N.}, ... ({-N}: from the last source).
_REPLACEMENT = re.compile(r"\{(-?[0-9]+)?(|\.|/|//|/\.)\}|\{([#%])\}")
_PERL_REPLACEMENT = re.compile(r"\{-?[0-9]*=.*?=\}", re.S)  # {=perl expression=}, {N=...=}, across words too
_UNSAFE_IN_VALUE = re.compile(r"[^-_.+a-zA-Z0-9/]")  # GNU parallel quotes a value with any other character
_UNSAFE_IN_WORD = re.compile(r"[^\w@%+=:,./-]", re.ASCII)  # what the shell would read as more than text


class SyntaxRefused(BatchError):
    """GNU parallel's syntax that sieci does not run, or a mistake in it: a usage error."""

    exit_code = EXIT_USAGE


class Source:
    """One input source: its ``values`` (``:::``), or the ``path`` of a file of them (``::::``, ``-a``: its
    ``given_by``), ``linked`` to the source before it (``:::+``, ``::::+``)."""

    def __init__(self, values=None, path=None, linked=False, given_by="::::"):
        self.values = values
        self.path = path
        self.linked = linked
        self.given_by = given_by

    def __repr__(self):
        return f"Source({self.values!r}, {self.path!r}, linked={self.linked})"


def split_sources(words):
    """The input sources of the words from the first separator on (``[]`` for none)."""
    sources, current, file_due = [], None, None
    for word in words:
        if word in SEPARATORS:
            if file_due:
                raise SyntaxRefused(f"'{file_due}' needs a file after it")
            from_files, linked = SEPARATORS[word]
            current, file_due = (from_files, linked), word if from_files else None
            if not from_files:
                sources.append(Source(values=[], linked=linked))
            continue
        if current is None:
            raise SyntaxRefused(f"{word!r} comes before any ':::' or '::::'")
        from_files, linked = current
        if from_files:
            sources.append(Source(path=word, linked=linked, given_by="::::" + "+" * linked))
            file_due = None
        elif "\n" in word:
            raise SyntaxRefused(f"the value {word!r} holds a newline, at which GNU parallel would split it into "
                                "several values; give each value as a word of its own")
        else:
            sources[-1].values.append(word)
    if file_due:
        raise SyntaxRefused(f"'{file_due}' needs a file after it")
    return sources


def lines_of(data):
    """The values of a ``::::`` or ``-a`` file, as GNU parallel reads them: a line each, empty lines too."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [os.fsdecode(line) for line in lines]


class Combinations:
    """Every job's values, in GNU parallel's order, by the job's place (from 0): ``columns`` holds each
    source's values, ``linked`` whether each goes with the one before it. An empty source among others
    counts as one empty value, as in GNU parallel; when every source is empty there is no job."""

    def __init__(self, columns, linked):
        self.count = len(columns)
        if all(not values for values in columns):
            self.groups, self.total = [], 0
            return
        columns = [values or [""] for values in columns]
        groups = []
        for index, values in enumerate(columns):
            if index and linked[index]:
                groups[-1].append(values)
            else:
                groups.append([values])
        self.groups = [(group, min(map(len, group))) for group in groups]
        self.total = math.prod(length for _, length in self.groups)

    def __len__(self):
        return self.total

    def __getitem__(self, index):
        if not 0 <= index < self.total:
            raise IndexError(index)
        values = []
        for group, length in reversed(self.groups):
            index, row = divmod(index, length)
            values[:0] = [column[row] for column in group]
        return tuple(values)


# Replacement strings, as GNU parallel's Perl has them.

def basename(value):
    """{/}: s:.*/::"""
    return re.sub(r".*/", "", value, count=1)


def without_extension(value):
    """{.}: s:\\.[^/.]*$::"""
    return re.sub(r"\.[^/.]*$", "", value, count=1)


def dirname(value):
    """{//}: Perl's File::Basename::dirname, for Unix."""
    def fileparse(path):
        match = re.match(r"(.*/)?(.*)", path, re.S)
        return match.group(2), match.group(1) or "./"

    def strip_separators(path):
        return re.sub(r"(.)/*\Z", r"\1", path, count=1, flags=re.S)

    base, folder = fileparse(value)
    folder = strip_separators(folder)
    if not base:
        base, folder = fileparse(folder)
        folder = strip_separators(folder)
    return folder


_CHANGES = {"": lambda value: value, ".": without_extension, "/": basename, "//": dirname,
            "/.": lambda value: without_extension(basename(value))}


def gnu_quote(value):
    """A value as GNU parallel quotes it for the shell (its shell_quote_scalar_default)."""
    if value == "":
        return "''"
    if not _UNSAFE_IN_VALUE.search(value):
        return value
    quoted = "'" + value.replace("'", "'\"'\"'") + "'"
    quoted = quoted[2:] if quoted.startswith("''") else quoted
    return quoted[:-2] if quoted.endswith("''") else quoted


def _quote_text(text):
    return text if not text or not _UNSAFE_IN_WORD.search(text) else gnu_quote(text)


def quote_words(words):
    """A command's words as one line a shell reads back into them."""
    return " ".join(_quote_text(word) or "''" for word in words)


class Template:
    """PROG and its ARGs, with GNU parallel's replacement strings; ``sources``: how many input sources."""

    def __init__(self, words, sources):
        perl = _PERL_REPLACEMENT.search(" ".join(words))
        if perl:
            raise SyntaxRefused(f"the replacement string {perl.group()!r} is a Perl expression ({{=...=}}): {NOT_RUN}")
        self.words = [self._pieces(word, sources) for word in words]
        pieces = [piece for word in self.words for piece in word if not isinstance(piece, str)]
        self.replaces = bool(pieces)
        self.uses_slot = any(piece == ("%",) for piece in pieces)

    @staticmethod
    def _pieces(word, sources):
        """A word as its text and its replacement strings: ("#",), ("%",), (None, change) for all the
        values, (N, change) for source N's (from 0)."""
        pieces, at = [], 0
        for match in _REPLACEMENT.finditer(word):
            pieces.append(word[at:match.start()])
            at = match.end()
            number, change, counter = match.groups()
            if counter:
                pieces.append((counter,))
                continue
            position = None
            if number is not None:
                position = int(number) - 1 if int(number) > 0 else sources + int(number)
                if not 0 <= position < sources or int(number) == 0:
                    raise SyntaxRefused(f"{match.group()} names input source {number}, and there "
                                        f"{'is' if sources == 1 else 'are'} {sources}")
            pieces.append((position, change))
        pieces.append(word[at:])
        return pieces

    def command(self, values, seq, slot):
        """The job's command (a list of words): the job's ``values`` (one per source), its number ``seq``
        and its job slot ``slot``."""
        return [text for word in self._filled(values, seq, slot) for text, _ in word]

    def shell_line(self, values, seq, slot):
        """The command as a shell would need it, quoted as GNU parallel's --dry-run quotes it: each
        replaced value with its own quotes, the words' own text only where a shell would misread it."""
        return " ".join("".join(part for _, part in word) for word in self._filled(values, seq, slot, True))

    def _filled(self, values, seq, slot, quoted=False):
        """Each word's words (a replacement of all the values splits its word, as GNU parallel's shell
        does), each as (text, as quoted)."""
        words = []
        for word in self.words:
            texts = [["", ""]]
            for piece in word:
                if isinstance(piece, str):
                    texts[-1][0] += piece
                    texts[-1][1] += _quote_text(piece) if quoted else piece
                    continue
                replaced = self._replaced(piece, values, seq, slot)
                for number, text in enumerate(replaced):
                    if number:
                        texts.append(["", ""])
                    texts[-1][0] += text
                    texts[-1][1] += gnu_quote(text) if quoted else text
            if word == [""]:
                texts = [["", "''"]]
            words.append([tuple(text) for text in texts])
        if not self.replaces:
            words += [[(value, gnu_quote(value))] for value in values]
        return words

    @staticmethod
    def _replaced(piece, values, seq, slot):
        if piece == ("#",):
            return [str(seq)]
        if piece == ("%",):
            return [str(slot)]
        position, change = piece
        chosen = values if position is None else [values[position]]
        return [_CHANGES[change](value) for value in chosen]


def tag_of(values):
    """--tag's prefix for a job's lines: its values, a space apart, then a tab (as GNU parallel's)."""
    return (" ".join(values) + "\t").encode("utf-8", "surrogateescape")


class LineTagger:
    """Puts ``tag`` before each line of one job's stdout and of its stderr, a partial last line too."""

    def __init__(self, tag):
        self.tag = tag
        self.line_started = {}  # stream -> whether its current line has its tag

    def tagged(self, stream, data):
        pieces = []
        started = self.line_started.get(stream, False)
        *whole, last = data.split(b"\n")
        for line in [piece + b"\n" for piece in whole] + ([last] if last else []):
            pieces.append(line if started else self.tag + line)
            started = not line.endswith(b"\n")
        self.line_started[stream] = started
        return b"".join(pieces)
