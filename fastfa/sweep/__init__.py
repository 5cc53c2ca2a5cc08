"""Sweeps: many runs over rules, seeds and settings, on a local process pool or a Dask cluster.

- :mod:`fastfa.sweep.spec` reads a TOML spec and expands its grid into named runs;
- :mod:`fastfa.sweep.worker` trains one run into its run file (what every engine calls);
- :mod:`fastfa.sweep.engines` runs the grid: a local pool of processes, or Dask distributed;
- :mod:`fastfa.sweep.summary` gathers final metrics: mean and spread over seeds.
"""

from fastfa.sweep.engines import run_sweep
from fastfa.sweep.spec import SpecError, SweepSpec, load_spec
from fastfa.sweep.summary import collect, write_summary

__all__ = ["SpecError", "SweepSpec", "collect", "load_spec", "run_sweep", "write_summary"]
