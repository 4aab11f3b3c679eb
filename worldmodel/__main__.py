"""``python -m worldmodel``: the same as the ``worldmodel`` console script."""

from worldmodel.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
