"""A command line that must be refused, seen as its program's user sees it."""

from sieci.options import UsageError


def refused_usage(parse, *args, **kwargs):
    """Call ``parse``, which must refuse its command line; return the exit status its program's entry
    point would give. What that says is then on stderr (capsys has it): our own checks raise
    UsageError, which the entry point shows; argparse prints its own mistakes and exits."""
    try:
        parse(*args, **kwargs)
    except UsageError as error:
        error.show()
        return error.exit_code
    except SystemExit as exit:
        return exit.code
    raise AssertionError("the command line was accepted")
