"""The package's shape is part of its design: imports flow one way.

Ranks, lowest first: the shared base (errors, env, params and other top-level
helpers) < plumbing < artifacts < store / environment < run / review / remote
< sweeps / ui / integrations < cli < the public face (gitxp/__init__). A
module may import its own package and anything of a lower rank. dulwich and
the git binary belong to plumbing, cryptography to artifacts/crypto.py, click
to cli. ``KNOWN`` lists the imports against the flow that are still to be
undone; the test fails on a new one and on a listed one that is gone, so the
list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gitxp"

RANK = {
    "plumbing": 1,
    "store": 2,
    "artifacts": 3,
    "environment": 3,
    "review": 4,
    "remote": 4,
    "run": 5,
    "sweeps": 6,
    "ui": 6,
    "integrations": 6,
    "importers": 6,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}

# (importing module, imported module): why it is still here.
KNOWN: dict[tuple[str, str], str] = {
    ("gitxp.environment.capture", "gitxp.run.hardware"): "the GPU description is read from the sampler's module (run by path in a foreign interpreter)",
    ("gitxp.params", "gitxp.store.layout"): "the branch default and the limited YAML loader live in store/layout.py; they belong in the base",
    ("gitxp.store.aliases", "gitxp.remote.merge"): "borrows the timestamp/user helpers of remote and run",
    ("gitxp.store.aliases", "gitxp.run.begin"): "borrows the timestamp/user helpers of remote and run",
    ("gitxp.store.record", "gitxp.artifacts.keys"): "Record reads artifacts and the key through artifacts (artifacts take a Record: the cycle to break)",
    ("gitxp.store.record", "gitxp.artifacts.read"): "Record reads artifacts and the key through artifacts (artifacts take a Record: the cycle to break)",
    ("gitxp.store.record", "gitxp.run.notebook"): "notebook detection used for a record's display",
    ("gitxp.store.validate", "gitxp.artifacts.manifest"): "a pulled manifest is checked with artifacts' own rules",
    ("gitxp.text", "gitxp.store.layout"): "to be moved where it belongs",
}


def _package(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    if (PKG / parts[1]).is_dir():
        return parts[1]
    return parts[1] if parts[1] in RANK else "base"


def _imports() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        mod = ".".join(p for p in rel.parts if p != "__init__") if rel.name == "__init__" else ".".join(rel.parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.level:
                    base = mod.split(".")[: len(mod.split(".")) - node.level + (1 if path.name == "__init__.py" else 0)]
                    target = ".".join(base + [node.module])
                else:
                    target = node.module
                subs = [f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")]
                names = subs or [target]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                out.append((mod, name, str(path.relative_to(PKG.parent))))
    return out


def _is_module(name: str) -> bool:
    path = PKG.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _rank(pkg: str) -> int:
    return RANK.get(pkg, 0)


def test_imports_flow_one_way() -> None:
    found: set[tuple[str, str]] = set()
    for mod, target, _ in _imports():
        if not target.startswith("gitxp.") or target == "gitxp.__version__":
            continue
        target_mod = target
        while target_mod and not (PKG.parent / (target_mod.replace(".", "/") + ".py")).exists() and not (PKG.parent / target_mod.replace(".", "/")).is_dir():
            target_mod = target_mod.rpartition(".")[0]
        if not target_mod:
            continue
        src, dst = _package(mod), _package(target_mod)
        if src == dst or dst == "base" and src != "base":
            continue
        if src == "base" and dst == "base":
            continue
        if _rank(dst) >= _rank(src):
            found.add((mod, target_mod))
    new = sorted(found - set(KNOWN))
    gone = sorted(set(KNOWN) - found)
    assert not new, "imports against the flow (lower ranks must not import higher ones): " + ", ".join(f"{a} -> {b}" for a, b in new)
    assert not gone, "fixed, remove from KNOWN: " + ", ".join(f"{a} -> {b}" for a, b in gone)


# (file, library or "git"): why it is still outside its room.
KNOWN_FOREIGN: dict[tuple[str, str], str] = {
}


def test_foreign_libraries_stay_in_their_rooms() -> None:
    homes = {"dulwich": "gitxp.plumbing", "cryptography": "gitxp.artifacts.crypto", "click": "gitxp.cli"}
    found = set()
    for mod, target, where in _imports():
        root = target.split(".")[0]
        if root in homes and not (mod == homes[root] or mod.startswith(homes[root] + ".")):
            found.add((where, root))
    found |= _git_runners()
    new = sorted(found - set(KNOWN_FOREIGN))
    gone = sorted(set(KNOWN_FOREIGN) - found)
    assert not new, "outside its room (dulwich and git: plumbing/, cryptography: artifacts/crypto.py, click: cli/): " + ", ".join(f"{w} uses {r}" for w, r in new)
    assert not gone, "fixed, remove from KNOWN_FOREIGN: " + ", ".join(f"{w} {r}" for w, r in gone)


def _git_runners() -> set[tuple[str, str]]:
    """Files outside plumbing/ that build a `git ...` command line."""
    out = set()
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "plumbing":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant) and node.elts[0].value == "git":
                out.add((str(path.relative_to(PKG.parent)), "git"))
    return out


def test_architecture_doc_names_every_module() -> None:
    """docs/architecture.md is the map a newcomer reads: it must match the tree."""
    doc = (PKG.parent / "docs" / "architecture.md").read_text()
    missing = [
        str(p.relative_to(PKG.parent))
        for p in sorted(PKG.rglob("*.py"))
        if p.name not in ("__init__.py", "__main__.py") and p.name not in doc and f"{p.stem}," not in doc and f"{p.stem}/" not in doc
    ]
    packages = [d.name for d in PKG.iterdir() if (d / "__init__.py").exists() and f"{d.name}/" not in doc]
    assert not missing and not packages, f"add to docs/architecture.md: {missing + packages}"
