"""The systemd units in conf/ and the example configs they read.

Pure checks (the units parse, restart on failure, stop gracefully, read the
config with -c, keep secrets out; the configs parse as the daemons read them)
run everywhere; ``systemd-analyze verify`` runs where it is installed.
"""

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sieci.config import parse_master, parse_worker

from tests.helpers import REPO

CONF = Path(REPO) / "conf"
README = Path(REPO) / "README.md"
ROLES = ["master", "worker"]
INSTALLED_BIN = "/opt/sieci/venv/bin"
PARSE = {"master": parse_master, "worker": parse_worker}


def unit_path(role):
    return CONF / f"sieci-{role}.service"


def read_unit(path):
    """A unit file as configparser sees it: case-sensitive keys, the last of repeated keys."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    assert parser.read(path) == [str(path)]
    return parser


def exec_start(role):
    return shlex.split(read_unit(unit_path(role))["Service"]["ExecStart"])


def seconds(text):
    """A systemd time span such as ``60``, ``90s``, ``2min`` or ``1min 30s``, in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts, f"not a time span: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def config_copy(tmp_path, role, secret_file=None):
    """A copy of conf/ROLE.conf, with its commented secret-file line turned on if asked."""
    text = (CONF / f"{role}.conf").read_text()
    if secret_file is not None:
        text, count = re.subn(r"(?m)^# *secret-file *= *\S+$", f"secret-file = {secret_file}", text)
        assert count == 1
    path = tmp_path / f"{role}.conf"
    path.write_text(text)
    return str(path)


# --- the units, parsed -----------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_the_unit_runs_the_installed_daemon_with_its_config_file(role):
    argv = exec_start(role)
    assert argv[0] == f"{INSTALLED_BIN}/sieci-{role}"
    assert argv[argv.index("-c") + 1] == f"/etc/sieci/{role}.conf"


@pytest.mark.parametrize("role", ROLES)
def test_the_unit_keeps_secrets_out(role):
    service = read_unit(unit_path(role))["Service"]
    assert not [key for key, value in service.items() if "secret" in value.lower()]
    assert not [key for key in service if key.startswith("Environment")]


@pytest.mark.parametrize("role", ROLES)
def test_the_unit_restarts_on_failure_but_not_on_a_bad_configuration(role):
    service = read_unit(unit_path(role))["Service"]
    assert service["Restart"] == "on-failure"
    assert seconds(service["RestartSec"]) > 0
    assert "2" in service["RestartPreventExitStatus"].split()  # exit 2: bad command line or configuration


@pytest.mark.parametrize("role", ROLES)
def test_the_unit_gives_running_jobs_more_than_the_grace_period(role, tmp_path):
    service = read_unit(unit_path(role))["Service"]
    grace = PARSE[role](["-c", config_copy(tmp_path, role)], env={}).grace
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] == "mixed"  # SIGTERM to the daemon alone, not to its running job
    assert seconds(service["TimeoutStopSec"]) > grace


@pytest.mark.parametrize("role", ROLES)
def test_the_unit_starts_with_the_network_and_at_boot(role):
    unit = read_unit(unit_path(role))
    assert "network-online.target" in unit["Unit"]["After"].split()
    assert "network-online.target" in unit["Unit"]["Wants"].split()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_master_runs_as_the_sieci_user_without_privileges():
    service = read_unit(unit_path("master"))["Service"]
    assert (service["User"], service["Group"]) == ("sieci", "sieci")
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""


def test_the_worker_runs_as_root_to_run_jobs_as_another_user(tmp_path):
    service = read_unit(unit_path("worker"))["Service"]
    assert service["User"] == "root"
    # Only what switching to the job user and building its namespaces need, and its cgroups made beneath.
    capabilities = set(service["CapabilityBoundingSet"].split())
    assert {"CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SYS_ADMIN"} <= capabilities
    assert not capabilities & {"CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_BOOT"}
    assert service["Delegate"] == "yes" and "ProtectControlGroups" not in service
    # The example config leaves the job user to its default: nobody under root, never the worker's own.
    assert parse_worker(["-c", config_copy(tmp_path, "worker")], env={}).job_user is None


def test_the_readme_installs_where_the_units_look():
    section = README.read_text().split("## Run it on several machines", 1)[1].split("\n## ", 1)[0]
    assert f"{INSTALLED_BIN}/pip install" in section
    for role in ROLES:
        assert f"systemctl enable --now sieci-{role}" in section
        assert f"/etc/sieci/{role}.conf" in section


# --- the example configs -----------------------------------------------------------

def test_the_example_master_config_parses(tmp_path):
    args = parse_master(["-c", config_copy(tmp_path, "master")], env={})
    assert (args.workers_addr, args.clients_addr) == (("", 2000), ("", 2001))
    assert args.security["secret"] is None


def test_the_example_worker_config_parses(tmp_path):
    args = parse_worker(["-c", config_copy(tmp_path, "worker")], env={})
    assert args.masters == [("127.0.0.1", 2000)]
    assert args.security["secret"] is None


@pytest.mark.parametrize("role", ROLES)
def test_the_example_configs_read_the_secret_file_once_it_is_uncommented(role, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef\n")
    secret.chmod(0o600)
    args = PARSE[role](["-c", config_copy(tmp_path, role, secret_file=secret)], env={})
    assert args.security["secret"] == b"0123456789abcdef0123456789abcdef"


# --- systemd-analyze verify -----------------------------------------------------------

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


def test_ci_runs_the_readmes_own_test_command():
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick_start, re.S)
    ci = (Path(REPO) / ".ci" / "run").read_text()
    assert len(commands) == 2 and f'TEST_COMMAND="{commands[1]}"' in ci
