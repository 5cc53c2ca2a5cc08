"""The ``fastfa`` command line: thin click commands over the library.

Each command parses its options, calls the library, and prints. Errors the user
can fix become a one-line ``Error: ...`` on stderr with a non-zero exit status.
"""

import click

from fastfa import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="fastfa")
def main():
    """Train networks with feedback alignment and related rules, fast.

    \b
    Example:
      fastfa train --rule fa --epochs 5      # the bundled digits dataset
      fastfa rules                           # list the learning rules
    """


def _register():
    from fastfa.cli import data as data_commands

    main.add_command(data_commands.data)


_register()
