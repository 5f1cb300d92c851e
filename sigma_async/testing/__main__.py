"""``python -m sigma_async.testing``: serve the emulator until interrupted."""

from ._standalone import main

raise SystemExit(main())
