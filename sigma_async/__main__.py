"""``python -m sigma_async``: the ``sigma-async`` command line."""

from .cli import main

raise SystemExit(main())
