"""Where each of a daemon's settings came from: the command line, a ``SIECI_*`` variable or a config
file (configargparse's record of it), and which other source it beat; said in one line at start.

Values are shown as they were given. No option holds a secret itself (``--secret-file`` and
``--tls-key`` name files, which are never read here), so a line shows no secret.
"""

import re

COMMAND_LINE = "command line"
_OPTION_NAME = re.compile(r"[a-z][a-z_-]{0,39}")  # the shape of an option's name in a config file


class Setting:
    """One setting that is not a default: its flag, its value as given, its source, and the
    sources it beat (a variable or a config file key the command line or a variable overrode)."""

    def __init__(self, flag, value, source, beaten=()):
        self.flag = flag
        self.value = value
        self.source = source
        self.beaten = list(beaten)

    def describe(self):
        value = f" {self.value}" if self.value is not None else ""
        beaten = f", beating {' and '.join(self.beaten)}" if self.beaten else ""
        return f"{self.flag}{value} ({self.source}{beaten})"

    def as_dict(self):
        return {"option": self.flag, "value": self.value, "source": self.source, "beaten": self.beaten}


def setting_sources(parser, args, argv, env, config_items, config_source=COMMAND_LINE):
    """The Settings of ``args`` (parsed by ``parser`` from ``argv``, ``env`` and the config file's
    ``config_items``) that are not defaults, in the parser's order."""
    given = parser.get_source_to_settings_dict()
    from_env = {action.dest: (name, value) for name, (action, value)
                in given.get("environment_variables", {}).items()}
    from_file, path = {}, None
    for source, settings in given.items():
        if source.startswith("config_file|"):
            path = source.partition("|")[2]
            from_file.update({action.dest: value for action, value in settings.values()})
    settings = []
    for action in parser._actions:
        if action.dest in ("help", "version") or not action.option_strings and action.dest == "command":
            continue
        flag = action.option_strings[-1] if action.option_strings else action.metavar or action.dest
        if action.dest in ("config", "config_file"):
            if path is not None:
                settings.append(Setting(flag, path, config_source))
            continue
        file_keys = [key for key in parser.get_possible_config_keys(action) if key in config_items]
        env_name = getattr(action, "env_var", None)
        beaten = []
        if action.dest in from_env:
            name, value = from_env[action.dest]
            source = name
        elif action.dest in from_file:
            value, source = from_file[action.dest], path
        else:
            value = _on_command_line(action, argv, args)
            if value is _ABSENT:
                continue
            source = COMMAND_LINE
            if env_name and env.get(env_name):
                beaten.append(env_name)
        if source != path and file_keys and config_items:
            beaten += [f"{key} in {path or 'the config file'}" for key in file_keys]
        settings.append(Setting(flag, value, source, beaten))
    return settings


_ABSENT = object()


def _on_command_line(action, argv, args):
    """The value ``action`` was given on the command line, as given (None for a switch), or _ABSENT."""
    if not action.option_strings:
        value = getattr(args, action.dest, None)
        return _ABSENT if value in (None, [], action.default) else " ".join(value) if isinstance(value, list) else value
    found = _ABSENT
    for index, token in enumerate(argv):
        if token == "--":
            break
        for flag in action.option_strings:
            if token == flag:
                found = None if action.nargs == 0 else (argv[index + 1] if index + 1 < len(argv) else None)
            elif flag.startswith("--") and token.startswith(flag + "="):
                found = token.partition("=")[2]
    return found


def describe(settings):
    """The start's line of where settings came from, for the log."""
    if not settings:
        return "settings: all defaults"
    return "settings not at their defaults: " + ", ".join(setting.describe() for setting in settings)


def unknown_settings(path, keys, lines):
    """Why a config file (``path``, its ``lines``) is refused: its ``keys`` that are no option's. A key is
    named if it has an option name's shape, else only its line is: a secret's or a key's file given as the
    config file has its secret as its keys."""
    named = [key for key in keys if _OPTION_NAME.fullmatch(key)]
    unnamed = [_line_of(key, lines) for key in keys if not _OPTION_NAME.fullmatch(key)]
    why = []
    if named:
        why.append(f"unknown setting{'s' if len(named) > 1 else ''} {', '.join(named)}")
    if unnamed:
        where = f"line{'s' if len(unnamed) > 1 else ''} {', '.join(map(str, unnamed))}"
        why.append(f"{where} begin{'s' if len(unnamed) == 1 else ''} with no option's name (not shown, in case "
                   "it is a secret: is this a config file?)")
    return f"{path}: {'; '.join(why)}"


def _line_of(key, lines):
    """The number (from 1) of the first of ``lines`` that begins with ``key``."""
    return next(number for number, line in enumerate(lines, 1) if line.strip().startswith(key))
