"""Choose each rule's initial learning rate for biotorch-lenet-mnist from validation pilots.

    python -m benchmarks.select_lr runs/lenet-lr

Reads the runs of ``benchmarks/lenet_lr.toml``, prints each rule's best validation error (and
the epoch it was reached) at every rate, marks runs that diverged (a ``.failed.json`` record
instead of a finished run), and chooses per rule the rate with the lowest validation error.
Test figures are printed for the record only, after the choice: they play no part in it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from benchmarks.select_scale import folder_argument, pilot_result
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
        if meta["complete"]:
            table[rule][lr] = pilot_result(history, meta)
    return table


def cell(row, lr):
    """One rule's result at one rate, for the table."""
    if lr not in row:
        return "not run"
    return "diverged" if row[lr] is None else f"{100 * row[lr][0]:.2f}% ({row[lr][1]})"


def main(argv=None):
    table = pilots(folder_argument(__doc__, argv))
    rates = sorted({lr for row in table.values() for lr in row})
    print("| rule | " + " | ".join(f"lr {lr:g} valid (epoch)" for lr in rates) + " | chosen |")
    print("|---" * (len(rates) + 2) + "|")
    chosen = {}
    for rule, row in table.items():
        finished = {lr: value for lr, value in row.items() if value is not None}
        if finished:
            chosen[rule] = min(finished, key=lambda lr: finished[lr][0])
        cells = [cell(row, lr) for lr in rates]
        print(f"| {rule} | " + " | ".join(cells) + f" | {chosen.get(rule, '-')} |")
    print("\nchosen on validation: " + ", ".join(f"{rule} {lr:g}" for rule, lr in chosen.items()))
    tests = ", ".join(f"{rule} {100 * table[rule][lr][2]:.2f}%" for rule, lr in chosen.items())
    print(f"(for the record, after the choice: the pilots' selected models' test error {tests})")


if __name__ == "__main__":
    main()
