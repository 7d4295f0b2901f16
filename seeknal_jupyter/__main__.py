"""`python -m seeknal_jupyter` runs the `seeknal` command line."""

from seeknal_jupyter.cli import main

raise SystemExit(main())
