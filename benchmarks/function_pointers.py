"""Can a cached kernel call a function it is handed, at full speed, without recompiling?

The question behind compiled rule plugins (issue 18) and behind the first run's compile time
(docs/engine.md, "The first run"): today a kernel calls other kernels by name, so numba links their
code into its own and compiles it again; a kernel that took a plugin's jitted function as an
argument would be typed on the *dispatcher object*, which defeats ``cache=True`` across
processes (DESIGN.md section 4). numba's first-class function type is the other way: a ``cfunc``
has the type ``FunctionType[signature]``, the same for every function of that signature, so a
kernel that takes one is compiled (and cached) once and calls whatever function it is given
through a pointer.

Run ``python -m benchmarks.function_pointers``. It writes a small module to a temporary folder
and times, each in a fresh process with one numba cache:

- the kernel called with a dispatcher (as a plugin's ``@njit`` function would be passed today);
- the same kernel called with a ``cfunc`` of that function;
- a kernel that calls the function by name (how the engine calls its own kernels);

and prints, for each, the kernel's compile time in the first and in the second process, whether
the second process loaded it from the cache, and the cost of one call of a 16-element dot product.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

MODULE = textwrap.dedent(
    """
    from numba import njit

    @njit(cache=True)
    def leaf(a, b):
        s = 0.0
        for i in range(a.size):
            s += a[i] * b[i]
        return s

    @njit(cache=True)
    def caller(fn, a, b, n):
        t = 0.0
        for _ in range(n):
            t += fn(a, b)
        return t

    @njit(cache=True)
    def by_name(a, b, n):
        t = 0.0
        for _ in range(n):
            t += leaf(a, b)
        return t
    """
)

PROBE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from numba import cfunc, types
    import fpmod

    how = sys.argv[1]
    a, b = np.ones(16), np.ones(16)
    start = time.perf_counter()
    if how == "cfunc":
        sig = types.float64(types.float64[::1], types.float64[::1])
        fn = cfunc(sig, cache=True)(fpmod.leaf.py_func)
        run = lambda n: fpmod.caller(fn, a, b, n)
        kernel = fpmod.caller
    elif how == "dispatcher":
        run = lambda n: fpmod.caller(fpmod.leaf, a, b, n)
        kernel = fpmod.caller
    else:
        run = lambda n: fpmod.by_name(a, b, n)
        kernel = fpmod.by_name
    run(1)
    compile_s = time.perf_counter() - start
    n = 2_000_000
    start = time.perf_counter()
    run(n)
    per_call_ns = (time.perf_counter() - start) / n * 1e9
    hits = sum(kernel.stats.cache_hits.values())
    print(json.dumps({"compile_s": compile_s, "per_call_ns": per_call_ns, "cache_hit": hits > 0}))
    """
)


def probe(folder, how):
    """One fresh process: ``how`` is ``cfunc``, ``dispatcher`` or ``name``; returns its figures."""
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(folder, "cache"), PYTHONPATH=folder)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, how], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    header = f"{'how the kernel gets the function':<34} {'1st process':>12} {'2nd process':>12}"
    print(header + "  cached  ns/call")
    for how, label in (
        ("dispatcher", "an @njit function as argument"),
        ("cfunc", "a cfunc as argument"),
        ("name", "called by name (linked)"),
    ):
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "fpmod.py"), "w") as f:
                f.write(MODULE)
            first, second = probe(folder, how), probe(folder, how)
        print(
            f"{label:<34} {first['compile_s']:>10.2f} s {second['compile_s']:>10.2f} s  "
            f"{'yes' if second['cache_hit'] else 'no':>6}  {second['per_call_ns']:7.1f}"
        )


if __name__ == "__main__":
    main()
