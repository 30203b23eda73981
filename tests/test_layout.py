"""The house rules, checked on the code itself: imports only point down, no import cycle, short modules, and the
mechanisms that must exist once defined once.

    library  lightning_electra/ but runner/, tools/, cli.py, __main__.py
    runner   lightning_electra/runner/          imports the library
    tools    lightning_electra/tools/           imports the runner and the library
    analysis analysis/                          imports the library (the results table), reads tables only
    cli      lightning_electra/{cli,__main__}   the top: imports anything
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("lightning_electra/**/*.py"), *ROOT.glob("analysis/**/*.py")])
ALLOWED = {"library": {"library"}, "runner": {"library", "runner"}, "tools": {"library", "runner", "tools"},
           "analysis": {"library", "analysis"}, "cli": {"library", "runner", "tools", "analysis", "cli"}}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str | None:
    if module.startswith("analysis"):
        return "analysis"
    if module.startswith(("experiments",)):
        return "experiments"
    if not module.startswith("lightning_electra"):
        return None
    if module.startswith("lightning_electra.runner"):
        return "runner"
    if module.startswith("lightning_electra.tools"):
        return "tools"
    if module in ("lightning_electra.cli", "lightning_electra.__main__"):
        return "cli"
    return "library"


MODULES = {module_name(p) for p in SOURCES}


def imports(path: Path) -> set[str]:
    """Every suite module a file imports, at any depth of the file (a lazy import counts as much as any)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from package import submodule` imports the submodule; `from module import name`, the module
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        found |= {n for n in names if layer(n) is not None}
    return found


GRAPH = {module_name(p): imports(p) for p in SOURCES}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_point_down(module):
    wrong = {m for m in GRAPH[module] if layer(m) not in ALLOWED[layer(module)]}
    assert not wrong, f"{module} ({layer(module)}) imports {sorted(wrong)}"


def test_no_import_cycle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_no_source_file_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 450}
    assert not long


@pytest.mark.parametrize("mechanism, where", [
    ("os.replace(", "lightning_electra/io.py"),  # the atomic write
    ("torch.optim.AdamW(", "lightning_electra/optim.py"),  # the optimiser
    ("LambdaLR(", "lightning_electra/optim.py"),  # the schedule
    ("BertTokenizerFast", "lightning_electra/data/tokenizer.py"),  # the tokenizer builder
    (".median()", "lightning_electra/results.py"),  # the GLUE aggregate: the median over seeds
])
def test_each_mechanism_is_written_once(mechanism, where):
    places = [str(p.relative_to(ROOT)) for p in SOURCES if mechanism in p.read_text()]
    assert places == [where]


def test_the_library_never_sees_the_resolved_run():
    """The runner resolves a run once (lightning_electra/runner/resolved.py) and hands the library the parts it needs
    (a config, a path, a task): no library module imports the resolved run or names its type."""
    users = {m for m, deps in GRAPH.items() if "lightning_electra.runner.resolved" in deps}
    assert users and all(layer(m) != "library" for m in users)
    named = [p for p in SOURCES if layer(module_name(p)) == "library" and "ResolvedRun" in p.read_text()]
    assert not named


def test_messages_go_through_the_logger():
    """A `[tag] ...` line is a message: `lightning_electra.log.logger(tag)`, never a print of its own."""
    printed = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES for i, line in enumerate(p.read_text().splitlines(), 1)
               if 'print(f"[' in line or "print(\"[" in line]
    assert not printed
