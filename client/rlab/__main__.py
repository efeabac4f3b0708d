"""`python -m rlab`: the same command line as `rlab` (see rlab/cli.py)."""

from rlab.cli import main

if __name__ == "__main__":  # pytest's doctest collection imports this module too
    raise SystemExit(main())
