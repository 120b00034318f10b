def inner():
    raise ValueError("deep")
def outer():
    try:
        inner()
    except ValueError as error:
        raise KeyError("outer") from error
outer()
