import sys
for stream in (sys.stdin, sys.stdout, sys.stderr):
    print(repr(stream.name), stream.mode, stream.encoding, stream.errors, stream.line_buffering,
          stream.write_through, stream.isatty())
print(sys.__stdout__ is sys.stdout, sys.stdout.buffer.raw.closefd)
