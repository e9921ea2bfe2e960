"""Run the command-line client as ``python -m video2mp3``."""

from __future__ import annotations

import sys

from video2mp3.cli import main

sys.exit(main())
