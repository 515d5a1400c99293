"""Imports only go downward (README, "Layout"): no import cycle among recjax and tasks modules
(lazy imports included), tasks use only the foundation layer of recjax, and the layers below
tasks never import them."""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
FOUNDATIONS = ("recjax.config", "recjax.exit_codes", "recjax.tf_import", "recjax.metrics", "recjax.data", "recjax.items",
               "recjax.progress")
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


def test_only_the_model_gateway_applies_the_network_and_decoding_imports_no_network():
    """`recjax.model.EncoderDecoderModel` is the one code that applies the T5 network; the decoding
    algorithms take its functions (recjax.decoding.model_api) and import neither the network nor
    the model."""
    modules = _modules()
    for name, path in modules.items():
        deps = _imports(path, modules)
        if name not in ("recjax.model", "recjax.network"):
            assert "recjax.network" not in deps, f"{name} imports recjax.network: apply it through recjax.model"
        if _in(name, ("recjax.decoding",)):
            assert not deps & {"recjax.network", "recjax.model"}, (name, sorted(deps))
            source = path.read_text()
            assert ".apply(" not in source.replace("constraint.apply(", ""), f"{name} applies a module"


def test_the_commands_place_arrays_through_the_partitioner():
    """One partitioner: no module outside recjax.partitioning builds a Mesh or a NamedSharding of
    its own (the trainer, evaluation, infer, score, plan and the baselines take a Partitioner)."""
    modules = _modules()
    for name, path in modules.items():
        if name == "recjax.partitioning":
            continue
        tree = ast.parse(path.read_text())
        built = {node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                 for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, (ast.Name, ast.Attribute))}
        assert not built & {"Mesh", "NamedSharding"}, (name, sorted(built & {"Mesh", "NamedSharding"}))
