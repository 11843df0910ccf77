"""The layering the architecture promises, checked on the real import graph:
- nothing in worker/ imports FastAPI, Starlette or the web layer (service.api);
- nothing in service/ imports worker/;
- service.core imports no web framework;
- importing any module of service.core, or the worker's Celery app, has no side effects (no file or
  folder appears in the working directory, no connection is opened)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WEB = ("fastapi", "starlette", "service.api", "uvicorn")


def _modules(package: str) -> list[str]:
    root = REPO / package.replace(".", "/")
    return sorted(".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                  for p in root.rglob("*.py") if "migrations" not in p.parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _loaded_after_import(modules: list[str], cwd: Path) -> dict:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd)}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_worker_never_imports_the_web_layer(tmp_path):
    loaded = _loaded_after_import(_modules("worker"), tmp_path)
    web = [m for m in loaded if m.split(".")[0] in WEB or m.startswith("service.api")]
    assert not web, web
    for path in (REPO / "worker").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("fastapi", "starlette") or m.startswith("service.api")}
        assert not bad, (path, bad)


def test_service_never_imports_the_worker():
    for path in (REPO / "service").rglob("*.py"):
        bad = {m for m in _imports(path) if m == "worker" or m.startswith("worker.")}
        assert not bad, (path, bad)


def test_the_shared_core_has_no_web_imports_and_no_import_side_effects(tmp_path):
    modules = _modules("service.core") + ["worker.celery_app"]
    loaded = _loaded_after_import(modules, tmp_path)
    assert "service.core.services" in loaded and "worker.celery_app" in loaded
    assert not [m for m in loaded if m.split(".")[0] in WEB or m.startswith("service.api")]
    assert list(tmp_path.iterdir()) == [], "importing created files: " + str(list(tmp_path.iterdir()))
