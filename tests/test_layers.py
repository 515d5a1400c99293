"""Imports only go downward (README, "Layout"): no import cycle among recjax and tasks modules
(lazy imports included), tasks use only the foundation layer of recjax, and the layers below
tasks never import them."""
import ast
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
FOUNDATIONS = ("recjax.config", "recjax.exit_codes", "recjax.tf_import", "recjax.metrics", "recjax.data")
BELOW_TASKS = FOUNDATIONS + ("recjax.network", "recjax.param_tree", "recjax.partitioning", "recjax.optimizers",
                             "recjax.checkpoints", "recjax.hf_mapping")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for top in ("recjax", "tasks"):
        for path in (REPO / top).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: pathlib.Path, modules) -> set[str]:
    """The recjax / tasks modules a file imports anywhere in it (a `from pkg import sub` of a
    submodule counts as importing the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m in modules}


def _in(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module, path):
        state[module] = 1
        for dep in graph[module]:
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(path + [module, dep])
            if dep not in state:
                visit(dep, path + [module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_layers_below_tasks_do_not_import_them_and_tasks_use_only_the_foundations():
    modules = _modules()
    for name, path in modules.items():
        deps = _imports(path, modules)
        if name == "tasks" or name.startswith("tasks."):
            recjax_deps = {d for d in deps if d.startswith("recjax")}
            assert all(_in(d, FOUNDATIONS) for d in recjax_deps), (name, sorted(recjax_deps))
        elif _in(name, BELOW_TASKS):
            assert not any(d == "tasks" or d.startswith("tasks.") for d in deps), (name, sorted(deps))
            if _in(name, FOUNDATIONS):  # the foundations import nothing above them
                assert all(_in(d, FOUNDATIONS) for d in deps if d.startswith("recjax")), (name, sorted(deps))
