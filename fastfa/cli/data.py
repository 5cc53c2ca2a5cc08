"""``fastfa data``: convert data to fastfa's HDF5 dataset format.

Each subcommand calls one converter of :mod:`fastfa.datasets`, turns its errors
into a one-line ``Error: ...`` (exit status 1) and prints one line describing
the file it wrote.
"""

from __future__ import annotations

import functools
import re

import click

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _friendly_errors(command):
    """Turn dataset and file-system errors into a one-line ``click.ClickException``."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from fastfa.datasets import DatasetError
        from fastfa.files import FileSafetyError
        from fastfa.limits import LimitError

        try:
            return command(*args, **kwargs)
        except (DatasetError, FileSafetyError, LimitError) as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            detail = exc.strerror or str(exc)
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(" ".join(f"{where}{detail}".split())) from None

    return wrapper


class PositiveNumber(click.ParamType):
    """A number > 0, written as a decimal or a fraction such as ``1/255``."""

    name = "NUMBER"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            text = str(value).strip()
            try:
                top, _, bottom = text.partition("/")
                number = float(top) / float(bottom) if bottom else float(top)
            except (ValueError, ZeroDivisionError):
                self.fail(f"{value!r} is not a number or a fraction like 1/255", param, ctx)
        if not number > 0 or number == float("inf"):
            self.fail(f"{value!r} must be a finite number > 0", param, ctx)
        return number


class Column(click.ParamType):
    """A column: an integer index (negative counts from the end), or else a header name."""

    name = "INDEX|NAME"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value)
        return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else text


def _summary(path):
    """Print one line describing the dataset file just written."""
    from fastfa.datasets import open_dataset

    with open_dataset(path) as ds:
        click.echo(f"wrote {path}: {ds.describe()}")


def output_option(command):
    """``-o/--out`` (required) and ``--overwrite``."""
    command = click.option(
        "--overwrite", is_flag=True, help="Replace the output file if it exists (refused otherwise)."
    )(command)
    return click.option(
        "-o",
        "--out",
        required=True,
        type=click.Path(dir_okay=False, writable=True),
        help="The HDF5 dataset file to write.",
    )(command)


def name_option(default_help):
    return click.option(
        "--name", default=None, help=f"Dataset name stored in the file [default: {default_help}]."
    )


def x_scale_option(help_text):
    return click.option("--x-scale", type=PositiveNumber(), default=None, help=help_text)


source_option = click.option(
    "--source", default=None, help="Provenance / license text stored in the file's 'source' attribute."
)
task_option = click.option(
    "--task",
    type=click.Choice(["classification", "regression"]),
    default="classification",
    show_default=True,
    help="Integer class labels, or float regression targets.",
)
n_classes_option = click.option(
    "--n-classes",
    type=click.IntRange(min=1),
    default=None,
    help="Number of classes [default: largest label + 1].",
)


@click.group(context_settings=CONTEXT)
def data():
    """Convert data to fastfa's HDF5 dataset format.

    A dataset file holds groups train and test (optionally valid), each with
    x (rows x features, or images N x C x H x W) and y (class labels or
    regression targets), and root attributes name, task, n_classes, x_scale,
    source and, for images, image_shape. Train on one with `fastfa train FILE.h5`.

    \b
    Examples:
      fastfa data mnist ./mnist -o mnist.h5
      fastfa data mnist ./mnist -o mnist32.h5 --pad 32
      fastfa data fashion-mnist ./fashion -o fashion.h5
      fastfa data cifar10 cifar-10-python.tar.gz -o cifar10.h5
      fastfa data csv iris.csv -o iris.h5 --test-fraction 0.3
      fastfa data teacher --kind nonlinear -o teacher.h5
    """


def image_options(command):
    """``--images`` and ``--pad`` of the IDX converters."""
    command = click.option(
        "--pad",
        type=int,
        default=None,
        metavar="SIZE",
        help="Pad every image with zeros to SIZE x SIZE, centred (32: 2 pixels each side, "
        "as LeNet expects); implies --images.",
    )(command)
    return click.option(
        "--images",
        is_flag=True,
        help="Store x as images, N x 1 x 28 x 28, for convolutional networks [default: rows of 784].",
    )(command)


def _convert_idx(directory, out, overwrite, images, pad, name, source, default_name, default_source):
    from fastfa import datasets

    kwargs = {"name": name or default_name, "overwrite": overwrite, "images": images, "pad": pad}
    kwargs["source"] = default_source if source is None else source
    _summary(datasets.convert_mnist(directory, out, **kwargs))


@data.command(context_settings=CONTEXT)
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@output_option
@image_options
@name_option("mnist")
@source_option
@_friendly_errors
def mnist(directory, out, overwrite, images, pad, name, source):
    """Convert the four MNIST IDX files in DIRECTORY.

    Reads train-images-idx3-ubyte, train-labels-idx1-ubyte,
    t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each .gz or raw, as
    distributed), checks magic numbers and sizes, and stores 60000 training
    and 10000 test images as uint8 rows of 784 pixels with x_scale = 1/255;
    with --images as 1x28x28 images, with --pad 32 as 1x32x32 images.
    Files in the same format (KMNIST) work too: give --name and --source.

    \b
    Examples:
      fastfa data mnist ~/data/mnist -o mnist.h5
      fastfa data mnist ~/data/mnist -o mnist32.h5 --pad 32
    """
    from fastfa.datasets import MNIST_SOURCE

    _convert_idx(directory, out, overwrite, images, pad, name, source, "mnist", MNIST_SOURCE)


@data.command("fashion-mnist", context_settings=CONTEXT)
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@output_option
@image_options
@name_option("fashion-mnist")
@source_option
@_friendly_errors
def fashion_mnist(directory, out, overwrite, images, pad, name, source):
    """Convert the four Fashion-MNIST IDX files in DIRECTORY.

    The files have MNIST's names and format (train-images-idx3-ubyte.gz and the
    three others, as Zalando distributes them) and are checked and stored as
    `fastfa data mnist` does: 60000 training and 10000 test images of 28 x 28
    clothing items in 10 classes.

    \b
    Examples:
      fastfa data fashion-mnist ~/data/fashion -o fashion.h5
      fastfa data fashion-mnist ~/data/fashion -o fashion32.h5 --pad 32
    """
    from fastfa.datasets import FASHION_MNIST_SOURCE

    _convert_idx(directory, out, overwrite, images, pad, name, source, "fashion-mnist", FASHION_MNIST_SOURCE)


def _convert_cifar(path, out, overwrite, name, source, variant, labels="fine"):
    from fastfa import datasets

    _summary(
        datasets.convert_cifar(
            path, out, variant=variant, labels=labels, name=name, source=source, overwrite=overwrite
        )
    )


@data.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path(exists=True))
@output_option
@name_option("cifar10")
@source_option
@_friendly_errors
def cifar10(path, out, overwrite, name, source):
    """Convert CIFAR-10's Python batches: the archive or its folder.

    PATH is cifar-10-python.tar.gz as distributed, or the folder it extracts
    to (cifar-10-batches-py). Reads data_batch_1 to data_batch_5, test_batch and
    batches.meta (safely: the pickles may only build numpy arrays), checks each
    batch's layout and counts, and stores 50000 training and 10000 test images
    as uint8 N x 3 x 32 x 32 with x_scale = 1/255 and the class names.

    \b
    Examples:
      fastfa data cifar10 ~/data/cifar-10-python.tar.gz -o cifar10.h5
      fastfa train cifar10.h5 --model lenet-cifar --standardize channel
    """
    _convert_cifar(path, out, overwrite, name, source, "cifar10")


@data.command(context_settings=CONTEXT)
@click.argument("path", type=click.Path(exists=True))
@output_option
@click.option(
    "--labels",
    type=click.Choice(["fine", "coarse"]),
    default="fine",
    show_default=True,
    help="The 100 fine classes or the 20 superclasses.",
)
@name_option("cifar100, or cifar100-coarse")
@source_option
@_friendly_errors
def cifar100(path, out, overwrite, labels, name, source):
    """Convert CIFAR-100's Python batches: the archive or its folder.

    PATH is cifar-100-python.tar.gz as distributed, or the folder it extracts
    to (cifar-100-python). Reads train, test and meta as `fastfa data cifar10`
    reads its batches, with the fine (100) or coarse (20) labels.

    \b
    Examples:
      fastfa data cifar100 ~/data/cifar-100-python.tar.gz -o cifar100.h5
      fastfa data cifar100 ~/data/cifar-100-python -o cifar20.h5 --labels coarse
    """
    _convert_cifar(path, out, overwrite, name, source, "cifar100", labels)


@data.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@output_option
@click.option(
    "--label-column",
    type=Column(),
    multiple=True,
    help="Column of the label: its index (0 is the first, negative counts from the end), or its "
    "name in the header row, matched exactly [default: -1]; repeat it for several regression targets.",
)
@click.option(
    "--header/--no-header", default=None, help="Whether the first line names the columns [default: guess]."
)
@click.option(
    "--delimiter",
    default=None,
    help="Field separator [default: the first of , TAB ; in line 1, else spaces].",
)
@click.option(
    "--test-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Test rows in a second file of the same layout (instead of --test-fraction).",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Fraction of the rows drawn at random for the test split [default: 0.2].",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random train/test split.")
@task_option
@n_classes_option
@x_scale_option(
    "Store inputs as uint8 (integers 0..255) read back times this factor, e.g. 1/255 "
    "[default: store float32]."
)
@name_option("the file's stem")
@source_option
@_friendly_errors
def csv(
    file,
    out,
    overwrite,
    label_column,
    header,
    delimiter,
    test_file,
    test_fraction,
    seed,
    task,
    n_classes,
    x_scale,
    name,
    source,
):
    """Convert a CSV (or other delimited text) FILE, optionally gzipped.

    One row per line.
    Features are every column but the label column, given by index or, when
    the first line names the columns, by name. Numeric class labels are
    used as given; text labels become classes 0..K-1 in sorted order (their
    names are kept in the attribute 'classes'). Without --test-file a seeded
    random --test-fraction of the rows becomes the test split.

    \b
    Examples:
      fastfa data csv iris.csv -o iris.h5 --label-column 4 --header
      fastfa data csv iris.csv -o iris.h5 --label-column species
      fastfa data csv train.csv --test-file test.csv -o my.h5
      fastfa data csv housing.csv -o housing.h5 --task regression --test-fraction 0.25
    """
    from fastfa import datasets

    if test_file is not None and test_fraction is not None:
        raise click.UsageError("give --test-file or --test-fraction, not both")
    out = datasets.convert_csv(
        file,
        out,
        label_column=list(label_column)
        if len(label_column) > 1
        else (label_column[0] if label_column else -1),
        header=header,
        delimiter=delimiter,
        test_file=test_file,
        test_fraction=0.2 if test_fraction is None else test_fraction,
        seed=seed,
        task=task,
        x_scale=x_scale,
        n_classes=n_classes,
        name=name,
        source=source,
        overwrite=overwrite,
    )
    _summary(out)


@data.command(context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@output_option
@task_option
@n_classes_option
@x_scale_option("Multiplier for uint8 inputs, e.g. 1/255 [default: 1/255].")
@name_option("the file's stem")
@source_option
@_friendly_errors
def npz(file, out, overwrite, task, n_classes, x_scale, name, source):
    """Convert a numpy .npz archive FILE.

    FILE must hold the arrays x_train, y_train, x_test and y_test (optionally
    x_valid, y_valid), as written by numpy.savez. Inputs are rows (N x D) or
    images (N x H x W or N x C x H x W, stored as images); uint8 inputs stay
    uint8 (scaled by --x-scale when read). Labels may be integers or one-hot rows.

    \b
    Example:
      python -c "import numpy as np; np.savez('my.npz', x_train=..., y_train=..., x_test=..., y_test=...)"
      fastfa data npz my.npz -o my.h5
    """
    from fastfa import datasets

    _summary(
        datasets.convert_npz(
            file,
            out,
            task=task,
            n_classes=n_classes,
            x_scale=x_scale,
            name=name,
            source=source,
            overwrite=overwrite,
        )
    )


@data.command(context_settings=CONTEXT)
@output_option
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Rebuild from the UCI optdigits CSV (data/digits.csv.gz in the source tree) "
    "instead of copying the bundled file.",
)
@_friendly_errors
def digits(out, overwrite, csv_file):
    """Write the bundled digits dataset (fastfa's default).

    The UCI Optical Recognition of Handwritten Digits test set (E. Alpaydin,
    C. Kaynak, 1998; CC BY 4.0): 1797 8x8 images with grey levels 0..16, stored
    as uint8 with x_scale = 1/16, and a fixed 30% test split.

    \b
    Examples:
      fastfa data digits -o digits.h5
      fastfa data digits --csv data/digits.csv.gz -o digits.h5
    """
    from fastfa import datasets

    _summary(datasets.write_digits(out, csv=csv_file, overwrite=overwrite))


@data.command(context_settings=CONTEXT)
@click.option(
    "--kind",
    type=click.Choice(["linear", "nonlinear"]),
    default="linear",
    show_default=True,
    help="linear: y = T x with T ~ U[-1,1] (10 x 30); nonlinear: a 30-20-10-10 tanh teacher network.",
)
@output_option
@click.option(
    "--n-train", type=click.IntRange(min=1), default=10000, show_default=True, help="Training rows."
)
@click.option("--n-test", type=click.IntRange(min=1), default=2000, show_default=True, help="Test rows.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the teacher and the inputs.")
@_friendly_errors
def teacher(kind, out, overwrite, n_train, n_test, seed):
    """Write a synthetic teacher regression task.

    The linear and nonlinear teacher tasks of Lillicrap et al. (2016).
    Inputs x ~ N(0, I) with 30 features; 10 targets from a fixed random
    teacher, linear or a 30-20-10-10 tanh network. The teacher's parameters
    are stored in the file's 'teacher' group, so the task is reproducible.

    \b
    Examples:
      fastfa data teacher --kind linear -o linear.h5
      fastfa data teacher --kind nonlinear --n-train 50000 --seed 3 -o nonlinear.h5
    """
    from fastfa import datasets

    _summary(datasets.make_teacher(kind, out, n_train=n_train, n_test=n_test, seed=seed, overwrite=overwrite))
