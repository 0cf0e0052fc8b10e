"""``detect scan``'s driver: checks what the inputs and options ask for, keeps the results
table, and picks the engine that runs ``detect.scan``'s work: this process, or Ray
(``detect.ray_scan``). The work itself knows no engine; nothing it imports imports this."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from detect.results import ResultsTable
from detect.scan import ScanConfig, Scanner, error_result, scoring_rules
from swapscope.device import resolve_device
from swapscope.errors import InputError
from swapscope.files import output_file
from swapscope.formats.scan import InputScan, ScanResult
from swapscope.media.images import collect_media, is_image
from swapscope.ray_engine import Engine


def scan(inputs: list[str | Path], config: ScanConfig, device: str,
         on_result: Callable[[InputScan], None] | None = None,
         results: str | Path | None = None, engine: Engine | None = None) -> ScanResult:
    """Scan every input; ``on_result`` sees each input's result as soon as it is made. One bad
    input is one result with verdict "error", not a failed scan. With ``results`` (a Parquet
    table, ``detect.results``) each result is also a row there, and inputs the table already
    holds for this detector and these rules are skipped. ``engine`` (default: this process)
    may send the work to Ray (``detect.ray_scan``); the results are the same."""
    engine = (engine or Engine()).check()
    media = collect_media(inputs)
    if config.heatmap and len(media) != 1:
        raise InputError(f"--heatmap draws one input; got {len(media)}")
    if config.heatmap and engine.name != "single":
        raise InputError("--heatmap draws in this process; leave out --engine ray")
    if config.heatmap:
        image = is_image(media[0])
        output_file(config.heatmap, (".png", ".jpg", ".jpeg") if image else (".mp4",), new=True,
                    what=f"--heatmap of {'an image' if image else 'a video'}")
    scanner = Scanner(config, resolve_device(device) if engine.name == "single" else "cpu",
                      gather=engine.name == "single")
    rules = {**scoring_rules(scanner.config), "heatmap": scanner.config.heatmap}
    rules.update(threshold=scanner.threshold, threshold_source=scanner.threshold_source)
    info = scanner.detector.info
    keyed = {k: v for k, v in rules.items() if k != "heatmap"}  # what changes a score or verdict
    table = (ResultsTable(results, info.path, info.sha256, keyed) if results is not None
             else nullcontext())
    done, skipped = [], []
    with table:
        todo = []
        for path in media:
            if results is not None and table.done(path):
                skipped.append(str(path))
            else:
                todo.append(path)
        if engine.name == "single":
            made = (_scan_here(scanner, path) for path in todo)
        else:
            # optional: needs Ray (swapscope[scale])
            from detect.ray_scan import scan_on_ray

            made = scan_on_ray(scanner, todo, device, engine)
        for item in made:
            done.append(item)
            if results is not None:
                table.add(item, scanner.threshold)
            if on_result:
                on_result(item)
    order = {str(path): i for i, path in enumerate(todo)}
    done.sort(key=lambda item: order.get(item.path, len(order)))
    return ScanResult(detector=info, rules=rules, inputs=done, skipped=skipped)


def _scan_here(scanner: Scanner, path: Path) -> InputScan:
    started = time.perf_counter()
    try:
        item = scanner.scan(path)
    except InputError as exc:
        item = error_result(path, exc)
    item.timings["total"] = round(time.perf_counter() - started, 3)
    return item
