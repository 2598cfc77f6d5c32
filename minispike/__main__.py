"""``python -m minispike`` runs the command line (minispike/cli.py)."""
from .cli import main

raise SystemExit(main())
