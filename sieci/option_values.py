"""The value types of options: each reads a text and returns the value, or raises ValueError with a
message for people. Nothing heavy is imported: the client loads this on every start."""

_SIZE_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def size(text):
    """A byte count such as ``65536``, ``64K``, ``16M`` or ``1G``."""
    cleaned = text.strip().lower().removesuffix("b")
    factor = _SIZE_SUFFIXES.get(cleaned[-1:], 1)
    number = cleaned[:-1] if factor > 1 else cleaned
    try:
        value = int(float(number) * factor)
    except (ValueError, OverflowError):
        raise ValueError(f"not a size: {text!r} (try 65536, 64K, 16M or 1G)") from None
    if value <= 0:
        raise ValueError(f"a size must be positive, not {text!r}")
    return value


def seconds(text):
    """A positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):  # also refuses nan; math.isfinite would cost the client an import
        raise ValueError(f"a time must be positive and finite, not {text!r}")
    return value


def count(text):
    """A whole number, 0 or more."""
    return _whole_number(text, 0)


def positive_count(text):
    """A whole number, 1 or more."""
    return _whole_number(text, 1)


def dashboard_urls(text):
    """Other masters' dashboards' URLs, separated by commas (see master/peers.py)."""
    from sieci.master.peers import dashboard_urls as parse

    return parse(text)


def credit(text):
    """``auto`` (None), or a whole number, 1 or more."""
    return None if text.strip().lower() == "auto" else _whole_number(text, 1, " (or auto)")


def _whole_number(text, least, alternative=""):
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not a whole number: {text!r}{alternative}") from None
    if value < least:
        raise ValueError(f"must be {least} or more, not {text!r}{alternative}")
    return value


def text(value):
    return value


def switch(text):
    """An on/off option's value in the environment or a config file."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"not on or off: {text!r} (use one of {', '.join(TRUE_WORDS + FALSE_WORDS)})")


def format_size(value):
    for suffix, factor in sorted(_SIZE_SUFFIXES.items(), key=lambda item: -item[1]):
        if value % factor == 0:
            return f"{value // factor}{suffix.upper()}"
    return str(value)
