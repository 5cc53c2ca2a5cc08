"""Choose dfa's feedback scale for nokland-depth from the validation pilots.

    python -m benchmarks.select_scale runs/nokland-dfa-scale

Reads the runs of ``benchmarks/nokland_dfa_scale.toml``, prints each candidate's best
validation error (and the epoch it was reached) per network, and the candidate with the
lowest validation error summed over the networks. Test figures are printed for the record
only, after the choice: they play no part in it.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from fastfa.runs import is_run_file, load_run


def candidates(folder):
    """``{scale label: {network: (best valid error, best epoch, final test error)}}``."""
    table = defaultdict(dict)
    for path in sorted(p for p in Path(folder).glob("*.h5") if is_run_file(p)):
        trainer, history, meta = load_run(path)
        if "valid_error" not in history or not meta["complete"]:
            continue
        scale = trainer.config.rule_options.get("feedback_init", "1/sqrt(n_l) (default)")
        net = "x".join(str(h) for h in trainer.config.hidden)
        table[str(scale)][net] = pilot_result(history, meta)
    return table


def pilot_result(history, meta):
    """``(best validation error, its epoch, the selected model's test error)`` of a finished run
    (:func:`fastfa.runs.load_run`'s history and meta)."""
    selection = meta["selection"]
    best = history["epoch"].index(selection.best_epoch)
    return history["valid_error"][best], selection.best_epoch, selection.final_test.get("error", float("nan"))


def folder_argument(doc, argv):
    """The pilot folder named on the command line of a script documented by ``doc``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("folder")
    return parser.parse_args(argv).folder


def main(argv=None):
    table = candidates(folder_argument(__doc__, argv))
    nets = sorted({net for row in table.values() for net in row})
    complete = {scale: row for scale, row in table.items() if set(row) == set(nets)}
    print("| D_l ~ U[-s, s], s = | " + " | ".join(f"{n} valid (epoch)" for n in nets) + " | sum |")
    print("|---" * (len(nets) + 2) + "|")
    for scale, row in sorted(table.items()):
        cells = " | ".join(f"{100 * row[n][0]:.2f}% ({row[n][1]})" if n in row else "not run" for n in nets)
        total = f"{100 * sum(row[n][0] for n in nets):.2f}%" if scale in complete else "-"
        print(f"| {scale} | {cells} | {total} |")
    if not complete:
        print("no candidate has finished on every network")
        return
    chosen = min(complete, key=lambda s: sum(complete[s][n][0] for n in nets))
    print(f"\nchosen on validation: s = {chosen}")
    tests = ", ".join(f"{n} {100 * complete[chosen][n][2]:.2f}%" for n in nets)
    print(f"(for the record, after the choice: its selected models' test error {tests})")


if __name__ == "__main__":
    main()
