"""The package's floors (jaxhead/__init__.py): no import runs back up, no two modules form a
circle. Every import is read from the source with ``ast``, function-local ones included."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxhead"

# Top-level subpackage (or module) -> floor, bottom up, as jaxhead/__init__.py lists them.
FLOORS = {
    "numerics": 1, "face": 1, "files": 1, "pretrained": 1, "train": 1, "audio": 1,
    "data": 2,
    "sync": 3, "gpvae": 3, "preprocess": 3,
    "eval": 4,
    "disentangle": 5,
    "nerf": 6,
    "avatar": 7, "experiments": 7,
}  # fmt: skip
# Inside jaxhead.nerf, bottom up (a file imports only files of its own or a lower tier).
NERF_TIERS = {
    "config": 1,
    "encoding": 2, "grid": 2, "rays": 2, "render": 2, "patches": 2, "losses": 3, "perceptual": 2,
    "field": 4, "upsampler": 4, "model": 5,
    "conditions": 6, "step": 7, "heldout": 8, "own_sync": 8, "stage": 9,
    "poses": 10, "render_video": 11, "evaluate": 12,
}  # fmt: skip
# Inside jaxhead.gpvae, bottom up: readers and data, pure math, modules, step, generation,
# evaluation, task.
GPVAE_TIERS = {
    "readers": 1, "data": 1,
    "kernels": 2, "metrics": 2, "losses": 3,
    "models": 4, "step": 5, "generate": 6, "evaluate": 7, "stage": 8,
}  # fmt: skip
STAGE_TIERS = {"nerf": NERF_TIERS, "gpvae": GPVAE_TIERS}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """Every ``jaxhead.*`` module that ``path`` imports, anywhere in the file."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    """Every ``jaxhead.*`` module imported anywhere in ``source`` (a module of ``package``)."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # ``from jaxhead.nerf import stage`` imports the module jaxhead.nerf.stage
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("jaxhead.")}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        edges[name] = {m for m in imports_of(path) if m in modules and m != name}
    return edges


def floor(module: str) -> int:
    top = module.split(".")[1]
    if top not in FLOORS:
        raise AssertionError(f"{module}: add jaxhead.{top} to the floors of jaxhead/__init__.py")
    return FLOORS[top]


def test_every_subpackage_has_a_floor():
    for path in PACKAGE.iterdir():
        if path.name.startswith(("_", ".")) or path.name == "__pycache__":
            continue
        assert path.stem in FLOORS, f"jaxhead/{path.name} has no floor"


def upward(edges) -> list[str]:
    bad = []
    for source, targets in edges.items():
        if source == "jaxhead":
            continue
        for target in targets:
            if target == "jaxhead":
                continue
            if floor(target) > floor(source):
                bad.append(f"{source} -> {target}")
            else:
                s, t = source.split("."), target.split(".")
                if len(s) < 3 or len(t) < 3 or s[1] != t[1] or s[1] not in STAGE_TIERS:
                    continue  # not two modules of one tiered stage package
                tiers = STAGE_TIERS[s[1]]
                if tiers.get(t[2], 0) > tiers.get(s[2], 99):
                    bad.append(f"{source} -> {target} (tiers of jaxhead.{s[1]})")
    return sorted(bad)


def circles(edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_runs_up_a_floor():
    assert upward(graph()) == []


def test_no_circular_imports():
    assert circles(graph()) == []


@pytest.mark.parametrize("package", sorted(STAGE_TIERS))
def test_every_stage_module_has_a_tier(package):
    for path in (PACKAGE / package).glob("*.py"):
        if path.stem != "__init__":
            assert path.stem in STAGE_TIERS[package], f"jaxhead/{package}/{path.name} has no tier"


@pytest.mark.parametrize(
    "source, target, expect",
    [
        ("jaxhead.data.voca", "jaxhead.nerf.stage", "up"),
        ("jaxhead.nerf.model", "jaxhead.nerf.stage", "up"),
        ("jaxhead.nerf.stage", "jaxhead.data.voca", "ok"),
        ("jaxhead.gpvae.step", "jaxhead.gpvae.generate", "up"),
        ("jaxhead.gpvae.generate", "jaxhead.gpvae.step", "ok"),
    ],
)
def test_the_checks_catch_what_they_should(source, target, expect):
    """The detectors themselves: an upward edge and a circle are found when planted."""
    edges = {source: {target}, target: set()}
    assert (upward(edges) != []) == (expect == "up")
    assert circles({"a.x": {"a.y"}, "a.y": {"a.x"}}) == [["a.x", "a.y"]]


def test_function_local_and_relative_imports_are_read():
    assert "jaxhead.train.loop" in imports_of(PACKAGE / "nerf" / "stage.py")
    code = (
        "def f():\n    from jaxhead.nerf import stage\n    from . import voca\n    return stage\n"
    )
    found = imports_in(code, "jaxhead.data")
    assert {"jaxhead.nerf.stage", "jaxhead.data.voca"} <= found
    assert upward({"jaxhead.data.x": found & {"jaxhead.nerf.stage"}}) != []
