"""``python -m fastfa`` behaves like the ``fastfa`` command."""

from fastfa.cli import main

if __name__ == "__main__":
    main(prog_name="fastfa")
