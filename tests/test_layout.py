"""The code's shape, pinned: small functions and classes, and one module that calls Ray."""

from __future__ import annotations

import ast
from pathlib import Path

PURE = True

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("runtime/**/*.py"), *ROOT.glob("entities/**/*.py")])

MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 300
SIZE_EXEMPT: set[tuple[str, str]] = set()

#: Where Ray may be imported: the seam, the connection to a cluster, the CLI and the HTTP
#: servers (the API, the dashboard) that start one (and Ray Serve's own controller calls),
#: Ray's metrics and the session folder that logs go to.
RAY_IMPORTERS = {
    "runtime/actors/ray_seam.py",
    "runtime/driver/cluster.py",
    "runtime/driver/cli.py",
    "runtime/driver/http_api.py",
    "runtime/driver/dashboard/app.py",
    "runtime/metrics.py",
    "runtime/logs.py",
}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def test_no_function_over_60_lines_and_no_class_over_300():
    too_long = []
    for path in SOURCES:
        name = str(path.relative_to(ROOT))
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if lines > limit and (name, node.name) not in SIZE_EXEMPT:
                    too_long.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    assert not too_long, too_long


def test_only_the_seam_imports_ray():
    importers = set()
    for path in SOURCES:
        for node in ast.walk(_tree(path)):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.add(str(path.relative_to(ROOT)))
    assert importers <= RAY_IMPORTERS, sorted(importers - RAY_IMPORTERS)
