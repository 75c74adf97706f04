"""`python -m fastserve` is the same as the `fastserve` console script."""

from fastserve.cli import main

raise SystemExit(main())
