"""House rules that keep the sandbox a tool beside the product.

- No module of `dask_operator/` outside `sandbox/` imports the sandbox; the CLI
  may, inside its `sandbox` command only.
- The operator image's build context (deploy/Dockerfile with its
  .dockerignore) holds no sandbox file.
- `pip install .` without extras declares no dependency the sandbox alone
  needs (kr8s brings `cryptography` on its own account), and importing the
  operator loads no sandbox module.
- No product module is over ~300 lines; reconcile.py stays a short pass.
- No Role or ClusterRole anywhere under deploy/ grants a wildcard.
"""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dask_operator"
PRODUCT = sorted(p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.relative_to(PACKAGE).parts)
GENERATED = ("_pb2.py", "_pb2_grpc.py")  # protoc's output (each protos/ folder has its regenerate script)
SANDBOX_ONLY_DEPENDENCIES = {"cryptography"}


def _sandbox_imports(tree: ast.AST) -> list[tuple[int, ast.AST | None]]:
    """(line, enclosing function) of every import that names the sandbox package."""
    found = []
    parents: dict[ast.AST, ast.AST] = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        if any("sandbox" in n.split(".") for n in names):
            scope = parents.get(node)
            while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = parents.get(scope)
            found.append((node.lineno, scope))
    return found


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_product_code_does_not_import_the_sandbox(path: Path) -> None:
    imports = _sandbox_imports(ast.parse(path.read_text()))
    if path == PACKAGE / "cli.py":
        assert imports, "the CLI's sandbox command imports it lazily"
        assert all(scope is not None and scope.name == "sandbox_main" for _, scope in imports), imports
    else:
        assert not imports, f"{path.name} imports the sandbox at lines {[line for line, _ in imports]}"


def _docker_context() -> list[str]:
    """Files of the repository that deploy/Dockerfile.dockerignore lets into the context."""
    rules = [line.strip() for line in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    kept = []
    for f in tracked:
        included = True
        for rule in rules:  # last match wins, as in .dockerignore
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            pattern = pattern.replace("**/", "")
            if fnmatch.fnmatch(f, pattern) or f.startswith(pattern + "/") or \
                    any(fnmatch.fnmatch(part, pattern) for part in f.split("/")[:-1] if "/" not in pattern
                        and pattern != "*"):
                included = negate
        if included:
            kept.append(f)
    return kept


def test_image_context_holds_the_package_but_no_sandbox() -> None:
    context = _docker_context()
    assert "pyproject.toml" in context and "dask_operator/operator.py" in context
    assert not [f for f in context if f.startswith("dask_operator/sandbox/")]
    assert not [f for f in context if f.startswith(("tests/", ".ci/", "example/"))]
    copied = [line.split()[1] for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY")]
    assert copied == ["pyproject.toml", "dask_operator"]


def test_base_install_has_no_sandbox_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in project["dependencies"]}
    assert not base & SANDBOX_ONLY_DEPENDENCIES
    assert SANDBOX_ONLY_DEPENDENCIES <= {d.split(">")[0] for d in project["optional-dependencies"]["sandbox"]}


def test_running_the_operator_loads_no_sandbox_code() -> None:
    code = ("import sys, dask_operator.operator, dask_operator.cli, dask_operator.handlers; "
            "print(sorted(m for m in sys.modules if m.startswith('dask_operator.sandbox')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("path", [p for p in PRODUCT if not p.name.endswith(GENERATED)],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_are_small_rooms(path: Path) -> None:
    limit = 150 if path.name == "reconcile.py" else 350
    assert len(path.read_text().splitlines()) <= limit


def test_test_modules_have_unique_basenames() -> None:
    """pytest imports test modules by basename (rootdir-relative imports): two files of one name
    in different folders stop the whole run at collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def _rbac_roles() -> list[tuple[str, dict]]:
    import yaml
    return [(str(f.relative_to(ROOT)), d) for f in sorted((ROOT / "deploy").rglob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d and d.get("kind") in ("Role", "ClusterRole")]


def test_no_role_in_deploy_grants_a_wildcard() -> None:
    roles = _rbac_roles()
    assert len(roles) >= 10, "every Role and ClusterRole of deploy/ and its components is read"
    for where, role in roles:
        for rule in role.get("rules") or []:
            for key, values in rule.items():
                assert not any("*" in v for v in values), f"{where}: {role['metadata']['name']}: {key}: {values}"
