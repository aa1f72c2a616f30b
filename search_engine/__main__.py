"""Command line: `python -m search_engine {search,evaluate} ...` (see `--help`)."""

from search_engine.cli import main

raise SystemExit(main())
