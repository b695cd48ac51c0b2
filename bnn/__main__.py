"""``python -m bnn``: the same as the ``bnn`` command."""

from bnn.cli import main

raise SystemExit(main())
