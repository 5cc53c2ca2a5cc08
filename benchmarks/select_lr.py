"""Choose each rule's initial learning rate for an experiment from validation pilots.

    python -m benchmarks.select_lr runs/lenet-lr

Reads the runs of a learning-rate sweep (``benchmarks/lenet_lr.toml``; ``liao_lr_sgd.toml`` and
``liao_lr_manhattan.toml``, whose grids also vary ``batch_norm``), prints each rule's best
validation error (and the epoch it was reached) at every rate, marks runs that diverged (a
``.failed.json`` record instead of a finished run), and chooses per rule the rate with the lowest
validation error. A grid with other axes besides ``rule`` and ``lr`` gets a row, and a choice, for
every combination of them (``bp, batch_norm=True``). Test figures are printed for the record only,
after the choice: they play no part in it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from benchmarks.select_scale import folder_argument, pilot_result
from fastfa.runs import is_run_file, load_run


def pilots(folder):
    """``{row: {lr: (best valid error, best epoch, final test error) or None if it failed}}``, a row
    being the rule and the grid's other axes but the rate and the seed (:func:`row_label`)."""
    grid = json.loads((Path(folder) / "sweep.json").read_text())
    table = defaultdict(dict)
    for run in grid["runs"]:
        rule, lr = row_label(run["point"]), float(run["point"]["lr"])
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


def row_label(point):
    """``"bp"``, or ``"bp, batch_norm=True"`` for a grid with more axes than the rule and the rate."""
    others = [f"{key}={value}" for key, value in point.items() if key not in ("rule", "lr", "seed")]
    return ", ".join([point["rule"], *others])


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
