"""The README's main job and the closed loop, as a user runs them, timed; their tables printed.

    python bench/eval_report.py [--out bench/out/eval_report] [--json out.json]

Runs ``python -m eval report --out OUT`` (the default loop on the sample data) and then
``python -m eval harden --out OUT``, prints both tables (report.md and the before/after table)
and copies the face-free plots (realism against detectability, ROC of the shipped detector) to
bench/figures/. The HTML report and its example frames stay in OUT: they show swaps of the
sample-data people.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine, shared_data, write_json  # noqa: E402
from _common import parser as bench_parser  # noqa: E402

from eval.report import slug  # noqa: E402


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, stdout=subprocess.PIPE,
                         text=True, check=True)
    return time.perf_counter() - start, run.stdout


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "eval_report"))
    args = parser.parse_args()
    shared_data(args.data)  # the default loop uses it; fail early and clearly without it
    out = Path(args.out)
    report_s, _ = timed(["eval", "report", "--out", str(out)])
    harden_s, harden_table = timed(["eval", "harden", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    figures = REPO / "bench" / "figures"
    shutil.copyfile(out / "tradeoff.png", figures / "eval_tradeoff.png")
    for det in report["detectors"]:
        name = slug(det["name"])
        shutil.copyfile(out / f"roc_{name}.png", figures / f"eval_roc_{name}.png")
    results = {"machine": machine(), "report_seconds": report_s, "harden_seconds": harden_s,
               "detectors": report["detectors"], "rows": report["rows"]}
    print(f"python -m eval report --out {out}: {report_s / 60:.1f} min\n")
    print((out / "report.md").read_text().split("\n## ")[0])
    print(f"\npython -m eval harden --out {out}: {harden_s / 60:.1f} min\n")
    print(harden_table.strip())
    print(f"\nmachine: {results['machine']}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
