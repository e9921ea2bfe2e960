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
