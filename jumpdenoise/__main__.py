"""``python -m jumpdenoise``: the command-line interface (same as the ``jumpdenoise`` script)."""

from jumpdenoise.cli import main

if __name__ == "__main__":
    main()
