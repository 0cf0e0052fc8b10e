"""The one exception type that means "the user handed us something we cannot use"."""


class InputError(Exception):
    """Bad input: unreadable or truncated media, no usable face, a checkpoint of the wrong kind.

    The CLIs print its message as one line on stderr and exit with code 2.
    """
