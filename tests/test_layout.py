"""The one-way stack ``eval -> forge, detect -> swapscope``, and the typed file formats that
cross it."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCTS = ("forge", "detect", "eval")


def _imported_packages(package: str) -> dict[str, set[str]]:
    """file -> top-level packages it imports, anywhere in the file (lazy imports too)."""
    return {file: {m.split(".")[0] for m in modules}
            for file, modules in _imported_modules(package).items()}


@pytest.mark.parametrize(("package", "forbidden"), [
    ("swapscope", {"forge", "detect", "eval"}),
    ("detect", {"forge", "eval"}),
    ("forge", {"detect", "eval"}),
])
def test_imports_flow_one_way(package, forbidden):
    wrong = {file: sorted(tops & forbidden) for file, tops in _imported_packages(package).items()
             if tops & forbidden}
    assert not wrong, f"{package} must not import {sorted(forbidden)}: {wrong}"


def test_file_formats_stand_apart_from_the_labelling_machinery():
    """swapscope.formats holds records, readers and writers; the watermark, face mark, Content
    Credentials and provenance reading live in swapscope.labels, which formats never imports."""
    wrong = {file: sorted(tops) for file, tops in _imported_modules("swapscope/formats").items()
             if any(m.startswith("swapscope.labels") for m in tops)}
    assert not wrong, wrong
    assert not list((REPO / "swapscope" / "formats").glob("*mark*.py"))


def test_the_face_toolkit_reads_no_file_format():
    """swapscope.faces finds, tracks and embeds faces; the file formats stand on it (a face set
    keeps aligned crops), never the reverse: a face set reaches identity enrolment as a reader the
    caller passes in (``FaceStore``)."""
    wrong = {file: sorted(m for m in tops if m.startswith(("swapscope.formats",
                                                           "swapscope.labels")))
             for file, tops in _imported_modules("swapscope/faces").items()}
    assert not any(wrong.values()), wrong


def _imported_modules(folder: str) -> dict[str, set[str]]:
    return {str(path.relative_to(REPO)): _module_imports(path)
            for path in sorted((REPO / folder).rglob("*.py"))}


def test_only_the_command_line_modules_import_the_cli_kit():
    """typer and rich (and swapscope.cli, which stands on them) belong to the CLI modules: the
    library reports progress through swapscope.progress (issue 28)."""
    kit = {"typer", "rich"}
    wrong = {}
    for package in ("swapscope", *PRODUCTS):
        for file, modules in _imported_modules(package).items():
            if Path(file).name in ("cli.py", "__main__.py"):
                continue
            bad = {m for m in modules if m.split(".")[0] in kit or m == "swapscope.cli"}
            if bad:
                wrong[file] = sorted(bad)
    assert not wrong, f"library modules import the CLI kit: {wrong}"


def test_the_projects_own_modules_are_imported_at_the_top_unless_a_comment_says_why():
    """An import of swapscope, forge, detect or eval inside a function hides a dependency; where
    one must be there (fast --help, an optional extra), a comment on it or above it says so."""
    own = {"swapscope", *PRODUCTS}
    hidden = []
    for package in own:
        for path in sorted((REPO / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for sub in ast.walk(node):
                    modules = ([sub.module] if isinstance(sub, ast.ImportFrom) and sub.module
                               and sub.level == 0 else
                               [a.name for a in sub.names] if isinstance(sub, ast.Import) else [])
                    if not any(m.split(".")[0] in own for m in modules):
                        continue
                    row = sub.lineno - 2  # the comment may head a group of imports
                    while row > 0 and lines[row].lstrip().startswith(("from ", "import ")):
                        row -= 1
                    if "#" not in lines[sub.lineno - 1] and not lines[row].strip().startswith("#"):
                        hidden.append(f"{path.relative_to(REPO)}:{sub.lineno}")
    assert not hidden, f"imports inside functions without a reason: {sorted(set(hidden))}"


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def _modules_after(code: str) -> set[str]:
    """Top-level packages loaded by running ``code`` in a fresh interpreter."""
    return {m.split(".")[0] for m in _loaded(code)}


def test_scanning_loads_no_forge_code():
    assert "forge" not in _modules_after("import detect.scan, detect.cli, detect.heatmap")


def test_the_base_package_loads_no_product():
    code = "\n".join(
        f"import {m}"
        for m in (
            "swapscope.cli", "swapscope.config", "swapscope.device", "swapscope.checkpoint",
            "swapscope.files", "swapscope.shared", "swapscope.timing", "swapscope.media.images",
            "swapscope.media.video", "swapscope.media.sample", "swapscope.faces.pipeline",
            "swapscope.formats.manifest", "swapscope.formats.faceset",
            "swapscope.labels.provenance", "swapscope.labels.watermark", "swapscope.formats.scan",
            "swapscope.ray_engine",
        )
    )
    assert not _modules_after(code) & set(PRODUCTS)


def test_the_default_engine_loads_no_ray():
    """Ray is an extra: the single-process engine (the README's commands) never imports it."""
    assert "ray" not in _modules_after("import detect.scan, detect.scan_driver, detect.cli, "
                                       "forge.dataset, forge.dataset_driver, forge.cli")


def test_inference_loads_no_training_code():
    assert "forge.train" not in _loaded("import forge.swap_video")
    assert "detect.train" not in _loaded("import detect.scan, detect.heatmap")


def test_version_comes_from_the_installed_metadata():
    from importlib.metadata import version

    import swapscope

    assert swapscope.__version__ == version("swapscope")


def test_no_function_is_over_60_lines_without_a_reason():
    """STYLE.md: orchestrators read as phases. A longer function says why in its docstring."""
    long = []
    for package in ("swapscope", *PRODUCTS):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > 60 and "long because" not in (ast.get_docstring(node) or ""):
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def test_the_code_is_lint_clean():
    """Lines of at most 100 characters, sorted imports, no unused names (ruff, as configured in
    pyproject.toml)."""
    pytest.importorskip("ruff")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", str(REPO)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tests_mirror_the_packages():
    """tests/<package>/test_<module>.py tests that package's module of that name; the tests
    that cross packages (faults, untrusted files, fuzzing, layout, sample data) sit at the top."""
    wrong = []
    for package in ("swapscope", *PRODUCTS):
        modules = {p.stem for p in (REPO / package).rglob("*.py")}
        wrong += [f"tests/{package}/{t.name}" for t in (REPO / "tests" / package).glob("test_*.py")
                  if t.stem.removeprefix("test_") not in modules]
    assert not wrong, f"test files named after no module of their package: {wrong}"


def test_no_two_modules_import_each_other_even_lazily():
    """No import circle among the project's modules, counting imports inside functions (the
    scan and its Ray engine imported each other before each got a driver above it)."""
    names = {}
    for package in ("swapscope", *PRODUCTS):
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: {m for m in _module_imports(path) if m in names and m != name}
             for name, path in names.items()}
    circles = set()
    for start in graph:  # every module reachable from start that reaches start back
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo += graph[name]
        if start in seen:
            circles.add(start)
    assert not circles, f"modules on an import circle: {sorted(circles)}"


def _module_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return found
