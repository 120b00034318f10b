"""One job through a client's masters: failover from one to the next, retries, and the detour
through the upload that a classic master forces on the job's stdin and files."""

import time

from sieci import defaults
from sieci.client.errors import JobLost, NeedsInline, NotAccepted, StdinCannotGo, TimedOut
from sieci.client.output import HeldOutput
from sieci.wire import protocol, upload_format

FIRST_RETRY_PAUSE = 0.5
LAST_RETRY_PAUSE = 8.0


class Failover:
    """Runs one job through ``masters`` (link.ClientLinks, in the order to try them): one that cannot be
    reached, refuses, or is lost before a worker accepted the job is passed over for the next. When
    every one has failed so, or the job was accepted and then lost, it is tried again only ``retries``
    times, after a short pause if no master took it. A job whose master cannot be reached again to
    attach to it (ReattachFailed) is lost as any other: with retries left it runs again on the next
    master (at least once: it may also run on at the lost one). ``timeout`` bounds the whole job; the
    files it returns are at most ``max_return`` bytes."""

    def __init__(self, masters, retries=0, timeout=None, max_return=defaults.MAX_RETURN):
        self.masters = masters
        self.retries = retries
        self.timeout = timeout
        self.max_return = max_return

    def run(self, code, fields, output, files=None, wanted=None, stdin=None):
        """The job's Result: ``code`` and ``fields``, its upload's payload and header fields; its output
        to ``output``. ``files``: the program's bundle.Bundle; ``wanted``: ``(folder, globs)``, where the
        files it returns go and which it may return; ``stdin``: a stdin.JobStdin."""
        started = time.monotonic()
        payload = protocol.as_payload(code)
        if self.retries and stdin is None:  # a broken connection attaches again to the job: see ClientLink.run_job
            fields = [*fields, upload_format.KEEP_FIELD]
        deadline = time.monotonic() + self.timeout if self.timeout else None
        failures, retries_left, position, passed_over = [], self.retries, 0, 0
        pause = FIRST_RETRY_PAUSE
        while True:
            master = self.masters[position % len(self.masters)]
            position += 1
            attempt_output = HeldOutput() if self.retries else output
            returned = self._results_folder(wanted)
            try:
                result = master.run_job(payload, fields, attempt_output, deadline, files, returned, stdin,
                                        reattach=self.retries)
            except TimeoutError:
                raise TimedOut(f"no result within the --timeout of {self.timeout:g} s") from None
            except NeedsInline as error:
                fields, payload = _inline(code, fields, stdin, files, error)
                stdin, files, position = None, None, position - 1  # the same master again
                continue
            except NotAccepted as error:
                failures.append(str(error))
                passed_over += 1
                if passed_over < len(self.masters):
                    continue
                if retries_left == 0:
                    if len(failures) == 1:
                        raise
                    raise NotAccepted("no master took the job: " + "; ".join(failures)) from None
                retries_left, passed_over = retries_left - 1, 0
                time.sleep(max(0.0, min(pause, deadline - time.monotonic())) if deadline else pause)
                pause = min(2 * pause, LAST_RETRY_PAUSE)
                continue
            except JobLost as error:
                if retries_left == 0 or (stdin is not None and stdin.started):
                    raise
                retries_left, passed_over = retries_left - 1, 0
                failures.append(str(error))
                continue
            if self.retries:
                attempt_output.replay(output)
            result.seconds = time.monotonic() - started
            if returned is not None:
                _note_files(result, returned)
            return result

    def _results_folder(self, wanted):
        """Where an attempt writes the files its job returns (each attempt afresh), or None."""
        if wanted is None:
            return None
        from sieci.client.results_folder import ResultsFolder

        return ResultsFolder(*wanted, self.max_return)


def _inline(code, fields, stdin, files, refusal):
    """The upload's fields and payload with ``stdin`` (a JobStdin, or None) and ``files`` (a
    bundle.Bundle, or None) inline, for a classic master, which relays one block only (``refusal``
    says it stands in the way); StdinCannotGo if stdin cannot go so."""
    if stdin is None and files is None:
        raise NotAccepted(str(refusal))  # they went inline already: the worker is not making sense
    data = None if stdin is None else _inline_stdin(stdin, refusal)
    bundle = {} if files is None else {"bundle": files.data, "bundle_digest": files.digest}
    inline_fields, payload = upload_format.encode_upload_payload(code, stdin=data, **bundle)
    return [field for field in fields if field != upload_format.STDIN_STREAM] + inline_fields, payload


def _inline_stdin(stdin, refusal):
    if stdin.terminal:
        raise StdinCannotGo(f"-t needs a sieci master all the way to the worker ({refusal})")
    data = stdin.read_inline(defaults.MAX_INLINE_STDIN)
    if data is None:
        raise StdinCannotGo(f"stdin is longer than the {defaults.MAX_INLINE_STDIN >> 10} KiB that can go with the "
                            f"code through a classic master ({refusal}); use a sieci master to stream it")
    return data


def _note_files(result, files):
    result.returned, result.not_returned = files.written, files.failed
    if result.status is None:
        result.not_returned.append((None, "the job ran on a classic worker, which returns no files"))
