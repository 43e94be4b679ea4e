"""The layers of docs/architecture.md, enforced: every import of every module (function-local
imports included) goes to its own layer or one the table below allows. A module that imports
a layer above its own fails here, naming the file, the line and the layers it may use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: (layer, module prefix), most specific prefix first; the order of docs/architecture.md
LAYERS = [
    ("core", "etl.core"),
    ("storage", "etl.storage"),
    ("quality", "etl.quality"),
    ("sources", "etl.sources"),
    ("factors", "etl.factors"),
    ("gold", "etl.gold"),
    ("feature_repo", "feature_repo"),
    ("serving", "etl.serving"),
    ("jobs", "etl.jobs"),
    ("doctor", "etl.doctor"),
    ("etl", "etl"),            # etl/__init__.py: a docstring only
    ("sdk", "sdk"),
    ("research", "research"),
    ("strategy", "strategy"),
    ("lifecycle", "lifecycle"),
    ("flows", "flows"),
    ("cli", "cli"),
]

#: what each layer may import besides itself
ALLOWED = {
    "core": set(),
    "storage": {"core"},
    "quality": {"core", "storage"},
    "sources": {"core", "storage", "quality"},
    "factors": {"core"},
    "gold": {"core", "storage", "factors"},
    "feature_repo": {"core", "factors", "gold"},
    "serving": {"core", "storage", "factors", "gold", "feature_repo"},
    "jobs": {"core", "storage", "quality", "sources", "factors", "gold", "feature_repo", "serving"},
    "doctor": {"core", "storage", "gold", "serving"},
    "etl": set(),
    "sdk": {"core", "storage", "factors", "gold", "serving"},
    "research": {"core", "storage", "factors", "sdk"},
    "strategy": {"core", "storage", "factors", "sdk", "research"},
    "lifecycle": {"core", "storage", "factors", "gold", "sdk", "research", "strategy"},
    "flows": {"core", "storage", "sources", "jobs"},
    "cli": {name for name, _ in LAYERS} - {"cli"},
}

PACKAGES = ("etl", "sdk", "research", "strategy", "lifecycle", "flows", "feature_repo", "cli")


def layer_of(module: str) -> str | None:
    for name, prefix in sorted(LAYERS, key=lambda lp: -len(lp[1])):
        if module == prefix or module.startswith(prefix + "."):
            return name
    return None


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path`` that names one of our packages."""
    mod = module_name(path, root)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from etl.storage import silver` imports etl.storage.silver
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return [(line, t) for line, t in out if t.split(".")[0] in PACKAGES]


def our_modules(root: Path = REPO) -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py"))


def violations(root: Path = REPO) -> list[str]:
    problems = []
    for path in our_modules(root):
        own = layer_of(module_name(path, root))
        for line, target in imports_of(path, root):
            theirs = layer_of(target)
            if theirs != own and theirs not in ALLOWED[own]:
                problems.append(f"{path.relative_to(root)}:{line}: {own} imports {target} ({theirs}); "
                                f"{own} may import {sorted(ALLOWED[own]) or 'nothing else'}")
    return problems


def test_every_module_has_a_layer():
    assert our_modules()
    missing = [module_name(p) for p in our_modules() if layer_of(module_name(p)) is None]
    assert not missing


def test_no_import_runs_up_a_layer():
    problems = violations()
    assert not problems, "imports against the layers of docs/architecture.md:\n" + "\n".join(problems)


def test_the_check_catches_an_upward_import(tmp_path):
    """The checker itself, on a tree of two modules: storage importing the SDK (also inside a
    function, also relatively) is reported; core importing nothing of ours is not."""
    (tmp_path / "etl" / "storage").mkdir(parents=True)
    (tmp_path / "etl" / "core").mkdir()
    (tmp_path / "etl" / "storage" / "probe.py").write_text(
        "import os\nfrom etl.core import clock\n\ndef f():\n    from sdk import alpha\n    from ..jobs import run\n")
    (tmp_path / "etl" / "core" / "fine.py").write_text("import numpy\n")
    problems = violations(tmp_path)
    assert [p.split(":")[1] for p in problems] == ["5", "6"]
    assert "storage imports sdk.alpha (sdk)" in problems[0] and "storage imports etl.jobs.run (jobs)" in problems[1]


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_allowed_layers_are_lower(layer):
    """No two layers may import each other: the table is a strict order (no cycles)."""
    for other in ALLOWED[layer]:
        assert layer not in ALLOWED[other], f"{layer} and {other} may import each other"


#: builtin exceptions library code must not raise at a user: an AlphaError subclass says what to do
BUILTIN_RAISES = {"Exception", "ValueError", "KeyError", "TypeError", "RuntimeError", "IndexError", "LookupError",
                  "AttributeError", "OSError", "IOError", "AssertionError"}


def builtin_raises(root: Path = REPO) -> list[str]:
    found = []
    for path in our_modules(root):
        tree = ast.parse(path.read_text(), str(path))
        # a module or class __getattr__ must raise AttributeError: that is Python's protocol
        protocol = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
                    for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None and id(node) not in protocol:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in BUILTIN_RAISES:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: raise {exc.id}")
    return found


def test_library_code_raises_only_alpha_errors():
    """Every error a user can see is an AlphaError subclass (etl/core/errors.py): no bare
    ``raise ValueError(...)`` and friends in the packages (re-raising with ``raise`` is fine)."""
    found = builtin_raises()
    assert not found, "raise an AlphaError subclass instead:\n" + "\n".join(found)


def test_the_raise_check_catches_a_builtin(tmp_path):
    (tmp_path / "sdk").mkdir()
    (tmp_path / "sdk" / "probe.py").write_text(
        "from etl.core.errors import ConfigError\n"
        "def f(x):\n    if x:\n        raise ValueError('no')\n    raise ConfigError('fine')\n"
        "def g():\n    try:\n        f(1)\n    except ConfigError:\n        raise\n    raise KeyError\n")
    assert sorted(builtin_raises(tmp_path)) == ["sdk/probe.py:11: raise KeyError", "sdk/probe.py:4: raise ValueError"]


def test_ruff_rules_hold():
    """The lint rules of pyproject.toml (blind excepts, raise Exception, import order, ...) hold
    in the whole tree: CI runs this, so a rule broken anywhere fails the build."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is a dev dependency (pip install -e '.[dev]')"
    out = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", str(REPO)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def test_docs_table_is_the_enforced_table():
    """docs/architecture.md's "may import" column says exactly what ALLOWED enforces."""
    documented = {}
    for line in (REPO / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ALLOWED:
            may = cells[3]
            documented[cells[0]] = (set() if may == "nothing of ours" else
                                    {n for n, _ in LAYERS} - {cells[0], "etl"} if may == "everything" else
                                    {m.strip() for m in may.split(",")})
    expected = {layer: allowed - {"etl"} for layer, allowed in ALLOWED.items() if layer != "etl"}
    assert documented == expected
