"""The layout is the architecture (docs/architecture.md): these tests fail when an import crosses a boundary.

Every import counts, including those inside functions (a lazy import is still a dependency)."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tb_attention"

# Which stages each stage may import (besides itself). The read side (serve) and the write side (write, capture,
# integrations, cli) never import each other; both build on format (the contract) and analysis (pure numpy).
ALLOWED = {
    "format": set(),
    "analysis": set(),
    "capture": {"format", "analysis"},
    "write": {"format", "analysis", "capture"},  # capture only for add_capture(), lazily
    "serve": {"format", "analysis"},
    # Notebook outputs read like serve/ (never import it); capture and write's checks only for show(cap),
    # neuron_view and array input, lazily.
    "notebook": {"format", "analysis", "capture", "write"},
    "integrations": {"format", "analysis", "capture", "write"},
    "cli": {"format", "analysis", "capture", "write", "integrations"},
    "__init__": {"write", "capture", "analysis", "integrations"},  # lazy public names only
}


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path, name=None):
    """Names of tb_attention modules `path` (module `name`) imports, resolved from relative imports; `from x import
    y` counts as x.y when that is a module."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tb_attention"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("tb_attention"):
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if _exists(sub) else module)
    return found


def _exists(module):
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _stage(module):
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1].removesuffix(".py")


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {_module_name(p): _imports(p) for p in SOURCES}


def test_the_package_has_the_stages_the_architecture_page_names():
    stages = {_stage(m) for m in GRAPH}
    assert stages == set(ALLOWED), f"stages {sorted(stages)} differ from ALLOWED: update docs/architecture.md too"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_stay_within_allowed_stages(module):
    stage = _stage(module)
    crossing = sorted(
        i for i in GRAPH[module] if _stage(i) != stage and _stage(i) not in ALLOWED[stage] and i != "tb_attention"
    )
    assert not crossing, f"{module} ({stage}/) imports {crossing}; allowed: {sorted(ALLOWED[stage])}"


def test_no_import_circles():
    def visit(module, path):
        if module in path:
            cycle = path[path.index(module) :] + [module]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        for dep in GRAPH.get(module, ()):
            if dep in GRAPH and dep != module and not module.startswith(dep + "."):
                visit(dep, path + [module])

    for module in GRAPH:
        visit(module, [])


def test_the_checker_sees_lazy_relative_and_aliased_imports(tmp_path):
    """The rule holds by itself only if the parser misses nothing: a module of serve/ that imports the writer
    lazily, relatively and under an alias must be caught."""
    fake = tmp_path / "fake.py"
    fake.write_text(
        "import numpy\nfrom tb_attention.format import codec\n"
        "def f():\n    from ..write import writer as w\n    import tb_attention.capture.session\n",
        encoding="utf-8",
    )
    found = _imports(fake, "tb_attention.serve.fake")
    assert found == {"tb_attention.format.codec", "tb_attention.write.writer", "tb_attention.capture.session"}
    assert sorted(i for i in found if _stage(i) not in ALLOWED["serve"] | {"serve"}) == [
        "tb_attention.capture.session",
        "tb_attention.write.writer",
    ]


def test_no_source_file_is_over_400_lines():
    frontend = PACKAGE.parent / "frontend" / "src"
    sources = list(SOURCES) + sorted(frontend.rglob("*.ts"))
    long = {
        str(p.relative_to(PACKAGE.parent)): n for p in sources if (n := len(p.read_text("utf-8").splitlines())) > 400
    }
    assert not long, f"files over 400 lines (split them along their seams): {long}"
