"""The error hierarchy every service classifies its failures into.

Library exceptions are translated into these at the boundary of the module
that talks to the library, so callers decide what to do from the class alone:
a ``PermanentError`` will fail the same way if tried again (bad input), a
``TransientError`` may succeed later (a dependency is down).
"""


class Video2Mp3Error(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(Video2Mp3Error):
    """The configuration is missing, malformed or unsafe for this environment."""


class PermanentError(Video2Mp3Error):
    """Retrying cannot help: the input itself is at fault."""


class TransientError(Video2Mp3Error):
    """A dependency failed; the same work may succeed once it is back."""


class RetryLater(TransientError):
    """Nothing failed, but the work must wait: try it again after ``delay`` seconds.

    Unlike other transient errors it spends no attempt (another worker holds the
    work's claim, or its destination is busy), so it never dead-letters a message.
    """

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay
