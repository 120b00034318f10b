"""The systemd units in conf/ and the example configs they read: the units parse, restart
on failure, stop gracefully, read the config with -c and keep secrets out; the configs
parse as the daemons read them. (``systemd-analyze verify``: tests/system/test_deployment.py.)
"""

import re
import shlex
from pathlib import Path

import pytest

from sieci.config import parse_master, parse_worker

from tests.helpers import REPO
from tests.helpers.units import CONF, INSTALLED_BIN, ROLES, read_unit, unit_path

README = Path(REPO) / "README.md"
DEPLOYMENT_GUIDE = Path(REPO) / "docs" / "deployment.md"
PARSE = {"master": parse_master, "worker": parse_worker}


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


def test_the_deployment_guide_installs_where_the_units_look():
    section = DEPLOYMENT_GUIDE.read_text().split("## Run it on several machines", 1)[1].split("\n## ", 1)[0]
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


def test_ci_runs_the_readmes_own_test_command():
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick_start, re.S)
    ci = (Path(REPO) / ".ci" / "run").read_text()
    assert len(commands) == 2 and f'TEST_COMMAND="{commands[1]}"' in ci
