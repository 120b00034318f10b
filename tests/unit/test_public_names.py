"""The names the Python API promises, wherever the package keeps them now."""

import pytest

import sieci
import sieci.client
from sieci.client import client, errors, futures, program, result


def test_the_public_names_are_sieci_s_own():
    assert (sieci.Client, sieci.run, sieci.Executor, sieci.load_program, sieci.pack_files) == (
        client.Client, client.run, futures.Executor, program.load_program, program.pack_files)
    assert (sieci.Result, sieci.ClientError, sieci.JobLost) == (result.Result, errors.ClientError, errors.JobLost)


def test_what_sieci_client_offered_as_a_module_it_offers_as_a_package():
    assert (sieci.client.Client, sieci.client.run, sieci.client.pack_files) == (
        client.Client, client.run, program.pack_files)
    with pytest.raises(AttributeError):
        sieci.client.no_such_name


def test_every_error_a_caller_can_meet_is_exported():
    """Each ClientError that leaves the Client is sieci's; NeedsInline never does (the client
    sends the job again with its stdin and files inline)."""
    import inspect

    classes = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, errors.ClientError)}
    assert {name for name in classes if getattr(sieci, name, None) is getattr(errors, name)} == classes - {
        "NeedsInline"}
    assert sieci.TimedOut.exit_code == 124 and "TimedOut" in sieci.__all__
