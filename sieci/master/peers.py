"""Other masters' dashboards, as ``--peer-dashboard`` names them: their URLs checked, and their origins
(what a browser's Origin header and a Content-Security-Policy name)."""

from urllib.parse import urlsplit

SCHEMES = {"http": 80, "https": 443}  # and their default ports


def dashboard_urls(text):
    """URLs ``http[s]://HOST:PORT/``, separated by commas: a list of them, each ending in /; ValueError
    for anything else (credentials, a query, another scheme)."""
    urls = []
    for url in filter(None, (part.strip() for part in text.split(","))):
        try:
            parts = urlsplit(url)
            parts.port  # a port that is no number raises ValueError
        except ValueError as error:
            raise ValueError(f"not a dashboard's URL: {url!r} ({error})") from None
        if parts.scheme not in SCHEMES or not parts.hostname or parts.username or parts.password \
                or parts.query or parts.fragment or any(character.isspace() for character in url):
            raise ValueError(f"not a dashboard's URL: {url!r} (give http://HOST:PORT/, as --metrics serves it)")
        urls.append(url if url.endswith("/") else url + "/")
    return urls


def origin_of(url):
    """``scheme://host[:port]`` of a dashboard's URL, as a browser's Origin header gives it."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port not in (None, SCHEMES[parts.scheme]) else ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{port}"
