"""The fork server and the job's process: what runs with the job's interpreter, which may be
another Python than the worker's (3.9 or later), so it imports nothing but the standard
library and this wing."""
