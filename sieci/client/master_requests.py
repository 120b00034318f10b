"""What a client asks one master besides running a job: its status, its jobs, to cancel one, to
attach to a detached one, to queue one detached. Each goes through a link.ClientLink, which dials
the master, proves it and signs the request."""

import time

from sieci.client.errors import ClientError, JobLost, NotAccepted, TimedOut
from sieci.client.link import send_files
from sieci.client.result import ResultsReading, next_answer
from sieci.wire import protocol, upload_format


def status(link):
    """The master's status, as a dict; ClientError if it gives none."""
    from sieci.wire.status import JSON, SIGNED_PAYLOAD

    return _json_request(link, protocol.STATUS, [JSON], SIGNED_PAYLOAD, "the status request")


def jobs(link):
    """The master's jobs, queued, running and kept, as a dict; ClientError if it gives none."""
    return _json_request(link, protocol.JOBS, [], protocol.JOBS, "--list")


def _json_request(link, word, fields, payload, what):
    sock = link.dial(link.connect_timeout)
    try:
        _, line = link.request(sock, word, fields, payload, what)
    finally:
        sock.close()
    import json

    try:
        return json.loads(line.raw)
    except ValueError:
        raise ClientError(f"master {link.where} answered {what} with something other than JSON") from None


def cancel(link, job_id):
    """Cancel job ``job_id``; ClientError if this master cannot."""
    sock = link.dial(link.connect_timeout)
    try:
        link.request(sock, protocol.CANCEL, [job_id.encode()], protocol.CANCEL + b" " + job_id.encode(), "--cancel")
    finally:
        sock.close()


def attach(link, job_id, output, timeout=None):
    """The Result of kept job ``job_id``, its output written to ``output`` as it comes;
    ClientError if this master does not keep it, JobLost if its results are cut short, TimedOut
    if they have not ended within ``timeout`` seconds (the client's --timeout; None: no bound)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = link.dial(link.connect_timeout if timeout is None else min(link.connect_timeout, timeout))
    try:
        conn, _ = link.request(sock, protocol.ATTACH, [job_id.encode()], protocol.ATTACH + b" " + job_id.encode(),
                               "--attach")
        conn.deadline = deadline
        if deadline is None:
            conn.settimeout(None)
        return ResultsReading(conn, output, link.where, job_id=job_id).read()
    except TimeoutError:
        raise TimedOut(f"no result within the --timeout of {timeout:g} s") from None
    except OSError as error:
        raise JobLost(f"lost the connection to master {link.where} "
                      f"({(error.strerror or str(error)).lower()})") from None
    finally:
        sock.close()


def detach(link, payload, fields, files=None):
    """Queue a job that runs with no client: its id, once the master has it; NotAccepted if it
    has not (a classic master cannot detach a job: ClientError)."""
    sock = link.dial(link.connect_timeout)
    try:
        conn = link.converse(sock, link.connect_timeout)
        conn.send(link.upload(payload, [*fields, upload_format.DETACH_FIELD]), completes=protocol.JOB)
        line = next_answer(conn, NotAccepted, f"before it took the job (master {link.where})")
        if line.word == protocol.NEED:
            send_files(conn, line, files)
            line = next_answer(conn, NotAccepted, f"before it took the job (master {link.where})")
    except OSError as error:
        raise NotAccepted(f"lost the connection to master {link.where} "
                          f"({(error.strerror or str(error)).lower()})") from None
    except protocol.RemoteProtocolError as error:
        raise NotAccepted(f"master {link.where} broke the protocol: {error}") from None
    finally:
        sock.close()
    if line.word == protocol.ERROR:
        raise NotAccepted(f"master {link.where} refused the job: {line.reason.decode('utf-8', 'replace')}")
    job_id = protocol.job_id_of(line.raw)
    if line.word != protocol.DETACHED or job_id is None:
        raise ClientError(f"master {link.where} cannot detach a job (a classic master?); the job may run "
                          "there all the same, with its output lost")
    return job_id
