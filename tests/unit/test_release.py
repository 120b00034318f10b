"""One version, in sieci/__init__.py: the newest release CHANGELOG.md names, what setup.py packages and
what every command's --version prints."""

import io
import re
from pathlib import Path

import pytest

import sieci
from sieci import config
from sieci.client import arguments

from tests.helpers import REPO

CHANGELOG = Path(REPO) / "CHANGELOG.md"


def released_versions():
    return re.findall(r"^## (\d+\.\d+\.\d+)\b", CHANGELOG.read_text(encoding="utf-8"), re.M)


def test_the_changelogs_newest_version_is_the_packages():
    versions = released_versions()
    assert versions and versions[0] == sieci.__version__, versions


def test_the_changelog_runs_newest_first():
    versions = [tuple(int(part) for part in version.split(".")) for version in released_versions()]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions), versions


def test_the_changelog_names_the_breaking_command_line_change():
    newest = CHANGELOG.read_text(encoding="utf-8").split(f"## {sieci.__version__}", 1)[1].split("\n## ", 1)[0]
    assert "**Breaking**" in newest
    assert "`sieci-client M a.py b.py` now runs `a.py` with the argument `b.py`" in " ".join(newest.split())


def test_setup_reads_the_version_from_the_package():
    setup = (Path(REPO) / "setup.py").read_text(encoding="utf-8")
    assert "version=VERSION" in setup and not re.search(r"version=\"\d", setup)
    line = next(line for line in setup.splitlines() if line.startswith("VERSION = "))
    read = {"re": re, "open": lambda path, **_: io.StringIO((Path(REPO) / path).read_text(encoding="utf-8"))}
    assert eval(line.partition(" = ")[2], read) == sieci.__version__


@pytest.mark.parametrize("program, parse", [
    ("sieci-client", lambda argv: arguments.parse_args(argv, {})),
    ("sieci-master", lambda argv: config.parse_master(argv, {})),
    ("sieci-worker", lambda argv: config.parse_worker(argv, {})),
    ("sieci-cluster", lambda argv: config.parse_cluster(argv, {})),
])
def test_every_command_prints_the_version(capsys, program, parse):
    with pytest.raises(SystemExit) as exit_info:
        parse(["--version"])
    assert exit_info.value.code in (0, None)
    assert capsys.readouterr().out == f"{program} {sieci.__version__}\n"
