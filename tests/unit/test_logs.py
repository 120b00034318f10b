"""The daemons' log lines (sieci/logs.py), a worker's folded redials (worker/link_log.py), and the
start's line of where each setting came from (sources.py)."""

import io
import json
import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sieci import config, logs, sources
from sieci.options import UsageError
from sieci.wire import protocol
from sieci.worker.link_log import SUMMARY_EVERY, JobName, JobNumbers, RedialLog

MOMENT = 1796587303.075  # 2026-12-06T20:01:43.075Z, as issue 30 quotes it


def record(message="job %s done", args=("0123456789abcdef",), **extra):
    entry = logging.LogRecord("sieci.master", logging.INFO, __file__, 1, message, args, None)
    entry.created = MOMENT
    entry.__dict__.update(extra)
    return entry


def test_times_are_iso_8601_in_utc_with_a_z():
    assert logs.timestamp(MOMENT) == "2026-12-06T20:01:43.075Z"
    assert logs.timestamp(1796587303.0) == "2026-12-06T20:01:43.000Z"


def test_local_times_carry_their_offset(monkeypatch):
    monkeypatch.setenv("TZ", "SIE-1")  # POSIX: one hour east of UTC, no zone database needed
    import time
    time.tzset()
    try:
        assert logs.timestamp(MOMENT, local=True) == "2026-12-06T21:01:43.075+01:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_json_line_has_the_zone_the_job_and_its_fields():
    line = logs.JsonFormatter().format(record(job="0123456789abcdef", event="done", unrelated="x"))
    assert json.loads(line) == {"time": "2026-12-06T20:01:43.075Z", "level": "info", "logger": "sieci.master",
                                "message": "job 0123456789abcdef done", "job": "0123456789abcdef", "event": "done"}


def test_a_worker_line_carries_the_jobs_number_on_its_link():
    line = logs.JsonFormatter().format(record("job for %s as %s exited 0", ("m:1", "w:2#3"), link_job="w:2#3"))
    assert json.loads(line)["link_job"] == "w:2#3"


def test_a_text_line_starts_with_its_time_and_names_a_job_its_message_does_not():
    formatter = logs.TextFormatter()
    assert formatter.format(record(job="0123456789abcdef")) == \
        "2026-12-06T20:01:43.075Z INFO sieci.master: job 0123456789abcdef done"
    assert formatter.format(record("client left", (), job="0123456789abcdef")) == \
        "2026-12-06T20:01:43.075Z INFO sieci.master: client left job=0123456789abcdef"


@given(st.text())
def test_any_forged_text_in_a_message_stays_one_line_of_either_format_and_drives_no_terminal(forged):
    entry = record("worker refused: %s", (forged,))
    for line in (logs.TextFormatter().format(entry), logs.JsonFormatter().format(entry)):
        assert len(line.splitlines()) == 1 and "\x1b" not in line and "\r" not in line, repr(line)
    assert json.loads(logs.JsonFormatter().format(entry))["message"] == "worker refused: " + forged


def test_control_characters_are_written_as_repr_writes_them():
    assert logs.escaped("a\nb\x1b[2K\x85\u2028\\n") == "a\\nb\\x1b[2K\\x85\\u2028\\n"
    assert logs.escaped("job \u202edeliaf") == "job \\u202edeliaf"  # a bidi override shows "failed" reversed
    assert logs.escaped("zażółć 'a' \\ b") == "zażółć 'a' \\ b"


@pytest.mark.parametrize("as_json", [False, True])
def test_a_refusal_is_argparses_text_or_one_json_line(as_json):
    out = io.StringIO()
    logs.startup_error("sieci-master", "argument --max-queue: not a whole number: 'x'", as_json,
                       "usage: sieci-master [-h]\n                    [--max-queue N]\n", file=out)
    if not as_json:
        assert out.getvalue() == ("usage: sieci-master [-h]\n                    [--max-queue N]\n"
                                  "sieci-master: error: argument --max-queue: not a whole number: 'x'\n")
        return
    (line,) = out.getvalue().splitlines()
    entry = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert (entry["level"], entry["logger"], entry["usage"]) == ("error", "sieci.master",
                                                                 "usage: sieci-master [-h] [--max-queue N]")
    assert entry["message"] == "sieci-master: error: argument --max-queue: not a whole number: 'x'"


@pytest.mark.parametrize("argv, env, config_text, expected", [
    (["--log-format", "json"], {}, None, "json"),
    (["--log-format=json"], {"SIECI_LOG_FORMAT": "text"}, None, "json"),
    ([], {"SIECI_LOG_FORMAT": "json"}, None, "json"),
    (["-c", "CONFIG"], {}, "log-format = json\n", "json"),
    (["-c", "CONFIG"], {"SIECI_LOG_FORMAT": "text"}, "log-format = json\n", "text"),
    ([], {"SIECI_MASTER_CONFIG": "CONFIG"}, "log-format = json\n", "json"),
    (["-c", "/no/such/file"], {}, None, "text"),
    (["--", "--log-format", "json"], {}, None, "text"),
])
def test_the_log_format_is_known_before_the_command_line_is_read(tmp_path, argv, env, config_text, expected):
    path = tmp_path / "master.conf"
    if config_text is not None:
        path.write_text(config_text)
    argv = [str(path) if token == "CONFIG" else token for token in argv]
    env = {name: str(path) if value == "CONFIG" else value for name, value in env.items()}
    assert config.log_format_asked("sieci-master", argv, env) == expected


def test_argparses_own_refusals_are_usage_errors():
    with pytest.raises(UsageError) as refusal:
        config.parse_master([":1", ":2", "--max-queue", "x"], env={})
    assert refusal.value.message == "argument --max-queue: not a whole number: 'x'"
    assert refusal.value.usage.startswith("usage: sieci-master")


# --- folded redials ----------------------------------------------------------------


def test_a_master_that_stays_down_is_a_warning_then_one_per_doubling_and_one_line_when_back():
    redials = RedialLog("10.0.0.1:2000")
    levels = [redials.failed("cannot reach master 10.0.0.1:2000 (refused)", 1.0, now)[0] for now in range(1, 17)]
    warned = [attempt for attempt, level in enumerate(levels, 1) if level == logging.WARNING]
    assert warned == [1, 2, 4, 8, 16]
    assert levels.count(logging.DEBUG) == 11
    level, message = redials.failed("cannot reach master 10.0.0.1:2000 (refused)", 1.0, 18)
    assert level == logging.DEBUG and message == "cannot reach master 10.0.0.1:2000 (refused); redialling in 1.00 s"
    assert redials.linked(20) == (logging.INFO, "linked to master 10.0.0.1:2000 again (17 failed attempts in 19 s)")


def test_a_long_outage_warns_at_least_once_a_minute():
    redials = RedialLog("m:1")
    now, warnings = 0.0, []
    for attempt in range(1, 41):  # the 30 s pauses of a long outage
        level, message = redials.failed("lost", 30.0, now)
        if level == logging.WARNING:
            warnings.append((attempt, now))
        now += 30.0
    assert [attempt for attempt, _ in warnings] == [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34,
                                                    36, 38, 40]
    assert all(later - earlier <= SUMMARY_EVERY for (_, earlier), (_, later) in zip(warnings, warnings[1:]))


def test_the_tally_starts_again_after_a_link_that_held():
    redials = RedialLog("m:1")
    assert redials.linked(0) == (logging.INFO, "linked to master m:1")
    for now in (1, 2, 3):
        redials.failed("refused", 0.5, now)
    assert redials.linked(4)[0] == logging.INFO
    assert redials.linked(5)[0] == logging.DEBUG  # a link refused at once, again: said once
    assert redials.failed("lost master m:1", 0.5, 100, link_held=True) == (
        logging.WARNING, "lost master m:1; redialling in 0.50 s")


def test_a_links_jobs_are_numbered_as_the_master_numbers_the_codes_it_sends():
    numbers = JobNumbers("127.0.0.1:40000")
    names = [numbers.next() for _ in range(3)]  # behind a classic master: no RELAY, no id
    assert [name.label for name in names] == ["127.0.0.1:40000#1", "127.0.0.1:40000#2", "127.0.0.1:40000#3"]
    assert names[0].fields == {"link_job": "127.0.0.1:40000#1"}


def test_a_job_is_named_by_the_id_its_master_gave_on_relay_beside_its_number():
    numbers = JobNumbers("127.0.0.1:40000")
    name = numbers.next(protocol.Line(b"RELAY job=3f2a9c0d17e4b865 sent=1765000000.abc free\n"))
    assert (name.label, name.malformed) == ("3f2a9c0d17e4b865", None)
    assert name.fields == {"job": "3f2a9c0d17e4b865", "link_job": "127.0.0.1:40000#1"}
    assert numbers.next(protocol.Line(b"RELAY sent=1765000000.abc\n")).label == "127.0.0.1:40000#2"


@pytest.mark.parametrize("value", [b"../../etc/passwd", b"3F2A9C0D17E4B865", b"3f2a9c0d17e4b86", b"3f2a9c0d17e4b8650",
                                   b"", b"\xff" * 40, b"3f2a9c0d17e4b86\x00", b"a" * 4000])
def test_an_id_that_is_no_jobs_id_is_not_used_and_only_its_start_is_kept_to_show(value):
    name = JobNumbers("w:1").next(protocol.Line(b"RELAY job=" + value + b"\n"))
    assert (name.label, name.job_id, name.fields) == ("w:1#1", None, {"link_job": "w:1#1"})
    assert name.malformed == value[:JobName.MALFORMED_SHOWN]


@given(st.binary(max_size=64).filter(lambda value: value.split() == [value]))  # one word
def test_only_sixteen_lower_case_hex_digits_name_a_job(value):
    name = JobNumbers("w:1").next(protocol.Line(b"RELAY job=" + value + b"\n"))
    is_an_id = len(value) == 16 and set(value) <= set(b"0123456789abcdef")
    assert name.label == (value.decode() if is_an_id else "w:1#1")


# --- where settings came from ------------------------------------------------------


def test_each_setting_names_its_source_and_what_it_beat_and_no_secret(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("a secret of some length, never to be logged\n")
    secret.chmod(0o600)
    other_secret = tmp_path / "other"
    conf = tmp_path / "master.conf"
    conf.write_text(f"keep-output = 30\nsecret-file = {other_secret}\nmax-queue = 9\n")
    args = config.parse_master(["-c", str(conf), "127.0.0.1:0", "--clients-addr=127.0.0.1:0", "--max-queue", "5",
                                "--classic-dispatch"],
                               env={"SIECI_SECRET_FILE": str(secret), "SIECI_MAX_QUEUE": "7", "SIECI_GRACE": "4"})
    described = {setting.flag: setting.as_dict() for setting in args.setting_sources}
    assert described == {
        "--config": {"option": "--config", "value": str(conf), "source": "command line", "beaten": []},
        "WORKERS_ADDR": {"option": "WORKERS_ADDR", "value": "127.0.0.1:0", "source": "command line", "beaten": []},
        "--clients-addr": {"option": "--clients-addr", "value": "127.0.0.1:0", "source": "command line",
                           "beaten": []},
        "--max-queue": {"option": "--max-queue", "value": "5", "source": "command line",
                        "beaten": ["SIECI_MAX_QUEUE", f"max-queue in {conf}"]},
        "--secret-file": {"option": "--secret-file", "value": str(secret), "source": "SIECI_SECRET_FILE",
                          "beaten": [f"secret-file in {conf}"]},
        "--keep-output": {"option": "--keep-output", "value": "30", "source": str(conf), "beaten": []},
        "--classic-dispatch": {"option": "--classic-dispatch", "value": None, "source": "command line",
                               "beaten": []},
        "--grace": {"option": "--grace", "value": "4", "source": "SIECI_GRACE", "beaten": []},
    }
    line = sources.describe(args.setting_sources)
    assert f"--secret-file {secret} (SIECI_SECRET_FILE, beating secret-file in {conf})" in line
    assert "never to be logged" not in line and "never to be logged" not in json.dumps(list(described.values()))


def test_a_config_file_from_its_variable_is_named_so(tmp_path):
    conf = tmp_path / "worker.conf"
    conf.write_text("timeout = 9\n")
    args = config.parse_worker(["127.0.0.1:1", "--job-namespaces", "off", "--job-cgroups", "off"],
                               env={"SIECI_WORKER_CONFIG": str(conf)})
    line = sources.describe(args.setting_sources)
    assert line.startswith(f"settings not at their defaults: --config {conf} (SIECI_WORKER_CONFIG), ")
    assert f"--timeout 9 ({conf})" in line


def test_all_defaults_is_said_so():
    assert sources.describe([]) == "settings: all defaults"


SECRET_LINE = "Zm9vYmFy/c2VjcmV0+dmFsdWUxMjM0NTY3ODkw="  # as head -c 32 /dev/urandom | base64 writes one
KEY_FILE = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n=Q9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize("text", [SECRET_LINE + "\n", "a1b2c3d4e5f60718293a4b5c6d7e8f90\n", KEY_FILE],
                         ids=["base64 secret", "hex secret", "private key"])
def test_a_secret_or_key_file_given_as_the_config_file_is_refused_without_showing_it(tmp_path, text):
    path = tmp_path / "secret"
    path.write_text(text)
    with pytest.raises(UsageError) as refused:
        config.parse_master(["127.0.0.1:0", "127.0.0.1:0"], env={"SIECI_MASTER_CONFIG": str(path)})
    message = refused.value.message
    assert message.startswith(f"{path}: ") or message.startswith(f"cannot read the config file {path}: "), message
    assert all(word.strip("=")[:12] not in message for line in text.splitlines() for word in line.split()
               if len(word) >= 12 and not word.startswith("---")), message


def test_an_unknown_key_is_named_if_it_has_an_options_shape_else_only_its_line():
    lines = ["masters = a:1", "bogus-key = 1", "  " + SECRET_LINE, "tsl"]
    assert sources.unknown_settings("w.conf", ["bogus-key", SECRET_LINE, "tsl"], lines) == (
        "w.conf: unknown settings bogus-key, tsl; line 3 begins with no option's name (not shown, in case it is a "
        "secret: is this a config file?)")
