"""An upload's files bundle at the master's client port: held in the store for its job, asked of its
client first if the store lacks it."""

import gevent.event

from sieci.wire import files_transfer, protocol, upload_format


class BundleIntake:
    """Bundles into ``files`` (a FilesStore), at most ``max_upload`` bytes each, each client given
    ``client_timeout`` seconds."""

    def __init__(self, files, max_upload, client_timeout):
        self.files = files
        self.max_upload = max_upload
        self.client_timeout = client_timeout
        self.arriving = {}  # digest: an Event set when a client has finished sending that bundle

    def hold(self, conn, header):
        """The bundle the upload's ``header`` names, if any, held in the store for its job.
        RemoteProtocolError, files_store.Mismatch or StoreFull, or TimeoutError if it cannot be."""
        wanted = upload_format.files_wanted(header)
        if wanted is None:
            return
        if wanted.size > self.max_upload:
            raise protocol.RemoteProtocolError(f"a files bundle of {wanted.size} bytes is larger than this "
                                               f"master's --max-upload of {self.max_upload} bytes")
        self._obtain(conn, wanted)
        self.files.hold(wanted.digest)

    def _obtain(self, conn, wanted):
        """The bundle in the store: asked of this client, unless another is sending it already (the
        jobs of a batch come together), whose sending is waited for, as long as a client may take."""
        while not self.files.has(wanted.digest):
            arriving = self.arriving.get(wanted.digest)
            if arriving is not None and arriving.wait(self.client_timeout):
                continue
            self.arriving[wanted.digest] = arriving = gevent.event.Event()
            try:
                files_transfer.fetch(conn, self.files, wanted)
            finally:
                if self.arriving.get(wanted.digest) is arriving:
                    del self.arriving[wanted.digest]
                arriving.set()
