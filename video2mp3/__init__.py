"""The video2mp3 command-line client: log in, convert videos, follow jobs, download MP3s.

It talks to a video2mp3 gateway over HTTP only, so it installs on its own
(``pip install 'video2mp3[cli]'``) on any machine that can reach the server.
With an ffmpeg (on PATH, or ``pip install 'video2mp3[cli-audio]'``) it uploads
only a video's audio track (``soundtrack``). Large uploads go by tus (``tus``) and
are remembered (``pending``), so running the command again resumes a cut one.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("video2mp3")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
