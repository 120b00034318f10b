"""systemd-analyze verify on the units in conf/, where it is installed."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.units import INSTALLED_BIN, ROLES, read_unit, unit_path


def verify(path):
    """``systemd-analyze verify`` on one unit: its exit status and what it said about the unit."""
    done = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60)
    said = [line for line in (done.stdout + done.stderr).splitlines() if path.name in line]
    return done.returncode, said


@pytest.fixture
def systemd_analyze(tmp_path):
    """Skips unless ``systemd-analyze verify`` is installed and passes a unit known to be good."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    good = tmp_path / "sieci-known-good.service"
    good.write_text(f"[Unit]\nDescription=x\n[Service]\nExecStart={sys.executable} -V\n"
                    "[Install]\nWantedBy=multi-user.target\n")
    status, said = verify(good)
    if status != 0 or said:
        pytest.skip(f"systemd-analyze verify does not work here: {said or status}")
    return verify


def local_copy(role, tmp_path, edit=lambda text: text):
    """The unit with ExecStart on this venv's script (verify wants the program to exist)."""
    script = Path(sys.executable).parent / f"sieci-{role}"
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e . in this venv)")
    text = unit_path(role).read_text().replace(f"{INSTALLED_BIN}/sieci-{role}", str(script))
    copy = tmp_path / unit_path(role).name
    copy.write_text(edit(text))
    assert shlex.split(read_unit(copy)["Service"]["ExecStart"])[0] == str(script)
    return copy


@pytest.mark.parametrize("role", ROLES)
def test_systemd_analyze_verify_passes_the_unit(role, tmp_path, systemd_analyze):
    status, said = systemd_analyze(local_copy(role, tmp_path))
    assert (status, said) == (0, [])


def test_systemd_analyze_verify_would_catch_a_mistake(tmp_path, systemd_analyze):
    copy = local_copy("master", tmp_path, lambda text: text.replace("KillMode=", "KilMode="))
    status, said = systemd_analyze(copy)
    assert any("KilMode" in line for line in said)
