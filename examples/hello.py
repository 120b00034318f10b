"""A first job: where it ran, and a little work."""

import platform
import sys

print(f"hello from {platform.node()}, Python {platform.python_version()}")
print(f"the sum of the first million squares is {sum(i * i for i in range(1_000_000))}")
print("(this line went to stderr)", file=sys.stderr)
