"""The ``fastfa`` command line: thin click commands over the library.

Each command parses its options, calls the library, and prints. Every error a
user can cause -- a bad option, a missing or malformed file -- ends as one line
``Error: ...`` on stderr with a non-zero exit status (2 for usage errors, 1 for
the rest), never a traceback.
"""

import sys

import click

from fastfa import __version__
from fastfa.cli.options import CONTEXT

# Raised (click >= 8.2) for a group called without a command; its message is the whole help.
# Show that help as click 8.1 did (stdout, status 0) instead of folding it into an error line.
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class OneLineErrors(click.Group):
    """A click group whose errors, usage errors included, are printed on one line.

    A broken pipe (``fastfa info RUN | head -1``) ends quietly with status 1 in click's own main
    (:func:`~fastfa.cli.options.user_errors` lets ``BrokenPipeError`` through to it).
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if isinstance(exc, NO_ARGS_IS_HELP):  # click >= 8.2: `fastfa` or `fastfa data` alone
                click.echo(exc.ctx.get_help(), color=exc.ctx.color)
                sys.exit(0)
            message = " ".join(exc.format_message().split())
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                message += f" (see '{ctx.command_path} --help')"
            click.echo(f"Error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Error: aborted", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            sys.exit(130)
        except MemoryError:  # the last resort: sizes are checked before allocating (fastfa.limits)
            click.echo("Error: out of memory (a smaller model, batch or dataset may help)", err=True)
            sys.exit(1)
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=OneLineErrors, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="fastfa")
def main():
    """Train networks with feedback alignment and related rules, fast.

    \b
    Examples:
      fastfa train --rule fa --epochs 5        # the bundled digits dataset
      fastfa rules                             # list the learning rules
      fastfa sweep grid.toml                   # many runs: rules x seeds x settings
      fastfa reproduce lillicrap-linear        # rerun a paper's result, with figures
      fastfa data mnist DIR -o mnist.h5        # convert MNIST's IDX files
      fastfa info mnist.h5                     # describe a dataset or a run
      fastfa predict run.h5 rows.csv -o out.csv  # use a trained model
    """


def _register():
    from fastfa.cli.data import data
    from fastfa.cli.inspect import evaluate, info, rules
    from fastfa.cli.model import export, predict
    from fastfa.cli.plot import plot
    from fastfa.cli.reproduce import reproduce
    from fastfa.cli.sweep import sweep
    from fastfa.cli.train import train

    for command in (train, sweep, reproduce, evaluate, predict, export, rules, info, plot, data):
        main.add_command(command)


_register()
