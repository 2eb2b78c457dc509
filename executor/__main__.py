"""`python -m oneroof.executor`: the `oneroof` command line, with the working directory taken off
the import path first.

`python -m` (unlike the `oneroof` console script) puts the working directory first on sys.path,
so a `pglast.py` or `psycopg.py` someone left there would be imported in place of the real one
and could patch the gate. It is removed before anything else is imported. What ran before this
module (the `oneroof.executor` package itself) was already found by then: run from a directory
only you can write, or use `python -P -m oneroof.executor` (Python's safe-path mode), or the
console script.
"""

import os
import sys

if not sys.flags.safe_path and sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.getcwd():
    del sys.path[0]

from oneroof.executor.cli import main  # noqa: E402 - only once the working directory is off the path

raise SystemExit(main())
