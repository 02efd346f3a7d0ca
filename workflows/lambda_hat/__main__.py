"""``python -m lambda_hat``: the command line."""

import os
import sys

# `python -m` puts the working directory first on sys.path. At this repository's root
# that directory holds the fork tree `parsl/` (sources one level down), which would then
# shadow the installed parsl as an empty namespace package. `python -P` avoids it too.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.getcwd() and os.path.isdir("parsl"):
    sys.path.pop(0)

from lambda_hat.cli import main

raise SystemExit(main())
