"""The client's terminal while its job runs on a terminal of its own (-t), as ssh -t has it.

Raw, so that every key (Ctrl-C, Ctrl-D and Ctrl-Z included) goes to the
job's terminal, whose own line discipline then does locally what this one
would: echo, editing, signals. Restored whatever happens. A resize of this
terminal (SIGWINCH) is passed on to the job's.
"""

import os
import signal
import termios
import tty

TERMINAL = 0  # the client's stdin


def raw_while(run, stdin):
    """``run()``'s result, with the terminal raw meanwhile; ``stdin`` (a stdin.JobStdin) hears of resizes."""
    saved_mode = termios.tcgetattr(TERMINAL)
    saved_handlers = {number: signal.getsignal(number) for number in (signal.SIGWINCH, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGWINCH, lambda *_: stdin.resized(*os.get_terminal_size(TERMINAL)))
    signal.signal(signal.SIGTERM, _exit_restored)
    signal.signal(signal.SIGHUP, _exit_restored)
    try:
        tty.setraw(TERMINAL, termios.TCSADRAIN)
        return run()
    finally:
        termios.tcsetattr(TERMINAL, termios.TCSADRAIN, saved_mode)
        for number, handler in saved_handlers.items():
            signal.signal(number, handler)


def _exit_restored(number, _):
    """A signal that would end the client ends it once the terminal is restored (see raw_while)."""
    raise SystemExit(128 + number)
