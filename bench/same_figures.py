"""Do two runs of a bench script give the same figures? Compares two of its --json files: the
same keys and lists, equal strings, and numbers within --tol (timings and the machine left out).
For a refactor that must not change results (issue 28: ``bench/dev_fakes.py`` and
``bench/scan.py`` before and after).

    python bench/same_figures.py BEFORE.json AFTER.json [--tol 1e-6]
"""

from __future__ import annotations

import argparse
import json
import math
import sys

SKIPPED = ("machine", "timings", "seconds", "wall_s", "stages_s")  # keys that measure time


def compare(a, b, path: str, worst: list[float]) -> list[str]:
    """Where ``a`` and ``b`` differ beyond numbers (the numbers' differences go to ``worst``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a if not any(s in k for s in SKIPPED)
                for d in compare(a[k], b[k], f"{path}.{k}", worst)]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} against {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b))
                for d in compare(x, y, f"{path}[{i}]", worst)]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if numbers and not (math.isnan(a) and math.isnan(b)):
        worst.append(abs(a - b))
        return []
    return [] if (a == b or numbers) else [f"{path}: {a!r} against {b!r}"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--tol", type=float, default=1e-6)
    args = p.parse_args()
    with open(args.before) as f, open(args.after) as g:
        worst: list[float] = []
        different = compare(json.load(f), json.load(g), "", worst)
    largest = max(worst, default=0.0)
    print(f"{len(worst)} numbers compared, largest difference {largest:.2e} (tolerance "
          f"{args.tol:g}); {len(different)} other differences")
    for line in different[:20]:
        print("  " + line)
    sys.exit(0 if not different and largest <= args.tol else 1)


if __name__ == "__main__":
    main()
