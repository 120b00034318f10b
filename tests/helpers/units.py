"""The systemd units in conf/, as the tests read them."""

import configparser
from pathlib import Path

from tests.helpers import REPO

CONF = Path(REPO) / "conf"
ROLES = ["master", "worker"]
INSTALLED_BIN = "/opt/sieci/venv/bin"


def unit_path(role):
    return CONF / f"sieci-{role}.service"


def read_unit(path):
    """A unit file as configparser sees it: case-sensitive keys, the last of repeated keys."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    assert parser.read(path) == [str(path)]
    return parser
