"""``python -m ganaug``: the same as the ``ganaug`` command."""

from __future__ import annotations

from ganaug.cli import main

raise SystemExit(main())
