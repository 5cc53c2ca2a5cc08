"""Regenerate docs/results.md: every ``fastfa reproduce`` experiment, full size, with figures.

Run ``python -m benchmarks.results --mnist-dir DIR [--out runs/results]`` (DIR holds MNIST's
four IDX files; ``--data mnist.h5`` takes a converted file instead). The runs go to ``--out``
(rerunning resumes them); the tables, the claims checked and the figures go to
``docs/results.md`` and ``docs/results/``. ``--only NAME[,NAME]`` reruns those experiments and
replaces (or adds) their sections, leaving the others' as they are.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from fastfa.datasets import convert_mnist
from fastfa.plots import load
from fastfa.reproduce import EXPERIMENTS, reproduce

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/results", help="folder for the runs (one subfolder each)")
    parser.add_argument("--data", default=None, help="MNIST as a fastfa dataset file")
    parser.add_argument("--mnist-dir", default=None, help="folder with MNIST's IDX files")
    parser.add_argument("--only", default=",".join(EXPERIMENTS), help="comma-separated experiment names")
    args = parser.parse_args(argv)
    figures = DOCS / "results"
    figures.mkdir(parents=True, exist_ok=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None and args.mnist_dir is not None:
        data = Path(args.out) / "mnist.h5"
        if not data.exists():
            convert_mnist(args.mnist_dir, data)
    sections = existing_sections(DOCS / "results.md")
    for name in args.only.split(","):
        out = Path(args.out) / name
        markdown, claims, paths = reproduce(name, out, data=data)
        for path in paths:
            shutil.copyfile(path, figures / path.name)
        markdown = markdown.replace("](" + name, "](results/" + name)
        runs = load(sorted(out.glob("rule-*.h5")))
        seconds = sum(float(np.sum(r["history"]["seconds"])) for r in runs)
        spent = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
        sections[name] = (
            markdown + f"\n({len(runs)} runs, {spent} of training in all, one thread each, on the "
            "2-core development machine.)\n"
        )
        print(markdown, flush=True)
    header = (
        "# Reproduced results\n\n"
        "Regenerate with `python -m benchmarks.results --mnist-dir DIR` (DIR: MNIST's IDX files).\n"
        "Each section is `fastfa reproduce NAME` at full size: its table (mean ± std over seeds, next\n"
        "to the published number), the paper's claims checked on our numbers, and its figures.\n\n"
    )
    ordered = [sections[name] for name in EXPERIMENTS if name in sections]
    ordered += [text for name, text in sections.items() if name not in EXPERIMENTS]  # e.g. measured costs
    (DOCS / "results.md").write_text(header + "\n".join(ordered))


def existing_sections(path):
    """``{heading: its section}`` of an existing results.md (each from its ``## NAME`` heading to the
    next), so that ``--only`` keeps the sections it does not rerun, and sections written by hand
    (headings that are not experiments) too."""
    if not path.exists():
        return {}
    sections, name, lines = {}, None, []
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("## "):
            if name is not None:
                sections[name] = "".join(lines).rstrip("\n") + "\n"
            name, lines = line[3:].strip(), []
        if name is not None:
            lines.append(line)
    if name is not None:
        sections[name] = "".join(lines).rstrip("\n") + "\n"
    return sections


if __name__ == "__main__":
    main()
