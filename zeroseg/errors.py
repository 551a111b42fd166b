"""Error types that carry the file, field or value a user must fix."""


class ZerosegError(Exception):
    """Base class: a clear, user-facing error (the CLI prints it without a traceback)."""


class DataError(ZerosegError, ValueError):
    """A dataset file is malformed: the message names the file, the image and the field."""


class ConfigError(ZerosegError, ValueError):
    """A params section or option is invalid: the message names the key and the value."""


class LeakError(ZerosegError):
    """A training image of the seen split contains pixels of an unseen class."""
