"""`python -m executor`: the same as the `oneroof` console script."""

from oneroof.executor.cli import main

raise SystemExit(main())
