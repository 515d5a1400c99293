"""Imports only go downward (README, "Layout"): every module of recjax and tasks belongs to one
of six layers and imports (lazy imports included) only its own layer or lower ones; no import
cycle; the model gateway is the only code that applies the network; one partitioner."""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
# The README's layers, lowest first: a module belongs to the layer of its longest matching prefix.
LAYERS = (
    ("foundations", ("recjax.xla_defaults", "recjax.config", "recjax.exit_codes", "recjax.tf_import",
                     "recjax.metrics", "recjax.progress", "recjax.predictions", "recjax.gin_utils", "recjax.data",
                     "recjax.items", "recjax.embedded")),
    ("network", ("recjax.network", "recjax.param_tree", "recjax.partitioning", "recjax.optimizers", "recjax.checkpoints",
                 "recjax.hf_mapping", "recjax.multihost")),
    ("tasks", ("tasks",)),
    ("model and decoding", ("recjax.decoding", "recjax.model", "recjax.model_inputs", "recjax.restore",
                            "recjax.scoring", "recjax.baselines", "recjax.encoder_embeddings", "recjax.input_pipeline",
                            "recjax.grain_loader", "recjax.task_rows", "recjax.conversion", "recjax.exporting")),
    ("training and evaluation", ("recjax.trainer", "recjax.train_lib", "recjax.evaluation", "recjax.recommend",
                                 "recjax.memory_plan", "recjax.task_inspection", "recjax.model_selection")),
    ("binaries", ("recjax.cli",) + tuple(f"recjax.{c}" for c in (
        "train", "eval", "infer", "score", "convert", "export", "plan", "baseline", "prepare", "index", "inspect",
        "compare", "stats"))),
)
FOUNDATIONS = LAYERS[0][1]
BELOW_TASKS = FOUNDATIONS + LAYERS[1][1]


def _layer(name: str) -> int:
    if name == "recjax":  # the package's __init__: XLA defaults only
        return 0
    best, layer = -1, None
    for number, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if _in(name, (prefix,)) and len(prefix) > best:
                best, layer = len(prefix), number
    assert layer is not None, f"{name}: in no layer of tests/test_layers.py (and the README's Layout)"
    return layer


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


def test_every_module_imports_only_its_layer_or_lower_ones():
    modules = _modules()
    for name, path in modules.items():
        mine = _layer(name)
        for dep in _imports(path, modules):
            assert _layer(dep) <= mine, (f"{name} ({LAYERS[mine][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})")


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
