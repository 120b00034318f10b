import resource
resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))
try:
    with open("big", "wb") as f:
        f.write(b"x" * 100)
except OSError as error:
    print("OSError", error.errno)
