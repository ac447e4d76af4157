"""``python -m app`` is the same as the ``tessera`` command."""

from app.cli import main

raise SystemExit(main())
