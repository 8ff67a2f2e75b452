"""`python -m tead`."""

from tead.cli import main

raise SystemExit(main())
