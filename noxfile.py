"""The test suite on every Python sieci supports: ``nox`` runs each one the machine has."""

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session):
    session.install("-q", "-e", ".[test]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)
