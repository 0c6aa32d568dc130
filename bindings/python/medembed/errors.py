"""errors.py - the exceptions medembed raises, one per library status code.

Every exception carries the library's one-line message; ``status`` is the C status code and
``status_name`` its enum name. Each class also derives from the built-in exception Python code
usually catches for that kind of failure (ValueError, OSError, MemoryError, ...).
"""


class MedembedError(Exception):
    """A libmedembed call failed."""

    status = -11
    status_name = "MEDEMBED_ERR_INTERNAL"

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidArgument(MedembedError, ValueError):
    status, status_name = -1, "MEDEMBED_ERR_ARG"


class OutOfMemory(MedembedError, MemoryError):
    status, status_name = -2, "MEDEMBED_ERR_NOMEM"


class IOFailure(MedembedError, OSError):
    status, status_name = -3, "MEDEMBED_ERR_IO"


class FormatError(MedembedError, ValueError):
    status, status_name = -4, "MEDEMBED_ERR_FORMAT"


class Unsupported(MedembedError, ValueError):
    status, status_name = -5, "MEDEMBED_ERR_UNSUPPORTED"


class TextTooLong(MedembedError, ValueError):
    status, status_name = -6, "MEDEMBED_ERR_TOO_LONG"


class NotFound(MedembedError, FileNotFoundError):
    status, status_name = -7, "MEDEMBED_ERR_NOT_FOUND"


class EncodingError(MedembedError, ValueError):
    status, status_name = -8, "MEDEMBED_ERR_ENCODING"


class Mismatch(MedembedError, ValueError):
    status, status_name = -9, "MEDEMBED_ERR_MISMATCH"


# -10 was MEDEMBED_ERR_NETWORK, which the library never returned (it does no networking);
# the header retired it and nothing maps to it.
_BY_STATUS = {c.status: c for c in (InvalidArgument, OutOfMemory, IOFailure, FormatError,
                                     Unsupported, TextTooLong, NotFound, EncodingError, Mismatch)}


def from_status(status, message):
    """The exception for a negative status code, carrying message."""
    cls = _BY_STATUS.get(int(status), MedembedError)
    return cls(message, int(status))
