"""`python -m tead`."""

from tead.cli.main import main

raise SystemExit(main())
