"""``python -m cagnet``: the command line (see `cagnet.cli`)."""

from cagnet.cli import main

raise SystemExit(main())
