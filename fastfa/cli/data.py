"""``fastfa data``: dataset converters (placeholder group, filled in by the datasets work)."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def data():
    """Convert data to fastfa's HDF5 dataset format."""
