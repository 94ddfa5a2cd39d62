"""The source layout and names (issue 19): a long source file says why it is long, no function-level import hides
an import cycle (both read from the sources), and the names renamed since stay as warning aliases."""
from __future__ import annotations

import ast
from pathlib import Path

import jax
import pytest

import deepeprop as dp
from deepeprop import network

SRC = Path(__file__).parents[1] / "src" / "deepeprop"
LIMIT = 400  # lines; a file over it states its reason at its top
MARKER = "Why this file is long:"
MIN_WORDS = 20  # a reason, not a label


def reason(text: str) -> str | None:
    """The paragraph of the module docstring of ``text`` that starts with :data:`MARKER`, or None."""
    docstring = ast.get_docstring(ast.parse(text)) or ""
    for paragraph in docstring.split("\n\n"):
        paragraph = " ".join(paragraph.split())
        if paragraph.startswith(MARKER):
            return paragraph[len(MARKER):].strip()
    return None


def unexplained_long_files(root: Path = SRC, limit: int = LIMIT) -> list[str]:
    """The files under ``root`` over ``limit`` lines without a reason of at least MIN_WORDS words."""
    out = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > limit:
            why = reason(text)
            if why is None or len(why.split()) < MIN_WORDS:
                out.append(f"{path.relative_to(root)} ({len(text.splitlines())} lines)")
    return out


def test_every_source_file_over_400_lines_states_why():
    long_files = [p for p in SRC.rglob("*.py") if len(p.read_text().splitlines()) > LIMIT]
    assert long_files  # the rule is exercised: some files are long
    assert unexplained_long_files() == [], (f"split these along a real seam or give a paragraph starting "
                                            f"'{MARKER}' in the module docstring: {unexplained_long_files()}")


def test_the_length_rule_refuses_a_long_file_without_a_reason(tmp_path):
    body = "x = 1\n" * (LIMIT + 1)
    (tmp_path / "short.py").write_text('"""Short."""\n' + "x = 1\n" * 10)
    (tmp_path / "bare.py").write_text('"""A module."""\n' + body)
    (tmp_path / "label.py").write_text(f'"""A module.\n\n{MARKER} it is long.\n"""\n' + body)
    words = " ".join(["because"] * MIN_WORDS)
    (tmp_path / "kept.py").write_text(f'"""A module.\n\n{MARKER} {words}.\n"""\n' + body)
    assert unexplained_long_files(tmp_path) == [f"bare.py ({LIMIT + 2} lines)", f"label.py ({LIMIT + 5} lines)"]


# ---------------------------------------------------------------------------- import cycles
def _modules(root: Path = SRC) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = ("deepeprop",) + path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _targets(module: str, node: ast.ImportFrom, is_package: bool, modules) -> set[str]:
    """The package modules a relative ``from`` import loads (and the packages above them, which load first)."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    target = ".".join(base + ([node.module] if node.module else []))
    found = {target} if target in modules else set()
    found |= {f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules}
    for name in list(found):
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return found


def import_graph(root: Path = SRC):
    """``(top, inner)``: per module, the package modules its top level imports, and the relative imports inside its
    functions as ``(line, targets)``."""
    modules = _modules(root)
    top, inner = {}, {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
        top[module], inner[module] = set(), []
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                targets = _targets(module, node, is_package, modules)
                if id(node) in nested:
                    inner[module].append((node.lineno, targets))
                else:
                    top[module] |= targets
    return top, inner


def hidden_cycles(root: Path = SRC) -> list[str]:
    """Function-level imports of a module that, through top-level imports, imports the importing module back."""
    top, inner = import_graph(root)

    def reach(start):
        seen, stack = set(), [start]
        while stack:
            for nxt in top.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    return [f"{module} line {line} imports {target}" for module, imports in sorted(inner.items())
            for line, targets in imports for target in sorted(targets) if module in reach(target)]


def test_no_function_level_import_hides_an_import_cycle():
    assert hidden_cycles() == []


def test_the_cycle_check_finds_a_hidden_cycle(tmp_path):
    package = tmp_path / "deepeprop"
    package.mkdir()
    (package / "__init__.py").write_text("from . import a\n")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (package / "c.py").write_text("def g():\n    from . import b\n    return b\n")  # b does not import c: fine
    # b's function imports a (and the package, which imports a): both lead back to b
    assert hidden_cycles(package) == ["deepeprop.b line 2 imports deepeprop", "deepeprop.b line 2 imports deepeprop.a"]


# ---------------------------------------------------------------------------- renamed names
def test_the_renamed_names_warn_and_resolve():
    for old, new in (("Layer", dp.Node), ("Projection", dp.Edge)):
        with pytest.warns(DeprecationWarning, match=f"deepeprop.{old} is deprecated"):
            assert getattr(dp, old) is new
        with pytest.warns(DeprecationWarning, match=f"deepeprop.{old} is deprecated"):
            assert getattr(network, old) is new
    model = dp.DeepRNN(3, [4, 5], 2, key=jax.random.PRNGKey(0))
    with pytest.warns(DeprecationWarning, match="use Network.hidden"):
        assert model.layers == model.hidden
    assert model.hidden == model.nodes[:-1] and model.hidden_sizes == (4, 5)
    assert model.node(1) is model.nodes[0] and model.node(3) is model.readout
    with pytest.raises(ValueError, match="0 is the input, not a node"):
        model.node(0)
    with pytest.raises(AttributeError):
        dp.NoSuchName  # noqa: B018
