"""The wire: the protocol's lines, blocks and fields, the formats they carry, and the socket
connection that frames them. Every side (client, master, worker) speaks through it; only
connection.py does I/O, and only on its socket."""
