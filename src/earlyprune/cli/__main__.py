"""``python -m earlyprune.cli``: the `earlyprune` command."""

from earlyprune.cli import main

raise SystemExit(main())
