"""``python -m lambda_hat``: the command line."""

from lambda_hat.cli import main

raise SystemExit(main())
