"""Shared pytest setup for the project's tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# `python -m pytest` run at the repo root puts the working directory first on sys.path,
# where the fork tree's directory parsl/ (no __init__.py) shadows the installed, editable
# Parsl as an empty namespace package and `import parsl.config` fails. Dropping that entry
# lets `import parsl` find the real package; the project's code is installed, not imported
# from the working directory, so nothing else needs it.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != str(REPO)]
if "parsl" in sys.modules and getattr(sys.modules["parsl"], "__file__", None) is None:
    del sys.modules["parsl"]
