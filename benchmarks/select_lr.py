"""Choose each rule's initial learning rate for biotorch-lenet-mnist from validation pilots.

    python -m benchmarks.select_lr runs/lenet-lr

Reads the runs of ``benchmarks/lenet_lr.toml``, prints each rule's best validation error (and
the epoch it was reached) at every rate, marks runs that diverged (a ``.failed.json`` record
instead of a finished run), and chooses per rule the rate with the lowest validation error.
Test figures are printed for the record only, after the choice: they play no part in it.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from fastfa.runs import is_run_file, load_run


def pilots(folder):
    """``{rule: {lr: (best valid error, best epoch, final test error) or None if it failed}}``."""
    grid = json.loads((Path(folder) / "sweep.json").read_text())
    table = defaultdict(dict)
    for run in grid["runs"]:
        rule, lr = run["point"]["rule"], float(run["point"]["lr"])
        path = Path(folder) / f"{run['name']}.h5"
        if (Path(folder) / f"{run['name']}.failed.json").exists():
            table[rule][lr] = None
            continue
        if not is_run_file(path):
            continue
        _, history, meta = load_run(path)
        if not meta["complete"]:
            continue
        selection = meta["selection"]
        best = history["epoch"].index(selection.best_epoch)
        test = selection.final_test.get("error", float("nan"))
        table[rule][lr] = (history["valid_error"][best], selection.best_epoch, test)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    args = parser.parse_args(argv)
    table = pilots(args.folder)
    rates = sorted({lr for row in table.values() for lr in row})
    print("| rule | " + " | ".join(f"lr {lr:g} valid (epoch)" for lr in rates) + " | chosen |")
    print("|---" * (len(rates) + 2) + "|")
    chosen = {}
    for rule, row in table.items():
        finished = {lr: value for lr, value in row.items() if value is not None}
        if finished:
            chosen[rule] = min(finished, key=lambda lr: finished[lr][0])
        cells = [
            "not run" if lr not in row else "diverged" if row[lr] is None else f"{100 * row[lr][0]:.2f}% ({row[lr][1]})"
            for lr in rates
        ]
        print(f"| {rule} | " + " | ".join(cells) + f" | {chosen.get(rule, '-')} |")
    print("\nchosen on validation: " + ", ".join(f"{rule} {lr:g}" for rule, lr in chosen.items()))
    tests = ", ".join(f"{rule} {100 * table[rule][lr][2]:.2f}%" for rule, lr in chosen.items())
    print(f"(for the record, after the choice: the pilots' selected models' test error {tests})")


if __name__ == "__main__":
    main()
