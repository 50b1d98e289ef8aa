"""The import rule of docs/architecture.md, checked on the source (``ast``: no package import):
each module imports only modules of its own layer or of the layers below; no library module
imports a command module; no circles, counting imports inside functions; no module over 400 lines."""

import ast
from pathlib import Path


PACKAGE = Path(__file__).resolve().parents[1] / "alexnet"
MAX_LINES = 400

# Bottom to top, as in docs/architecture.md; a tuple holds layers of one height, which do not
# import each other. The first matching prefix names a module's layer.
LAYERS = [
    ("base", ["alexnet.errors", "alexnet.console", "alexnet.atomic", "alexnet.cores", "alexnet.devices",
              "alexnet.defaults"]),
    ("model", ["alexnet.lrn", "alexnet.strided_conv", "alexnet.model", "alexnet.registry", "alexnet.modelfile",
               "alexnet.summary", "alexnet.classes", "alexnet.speed", "alexnet.bvlc"]),
    ("data", ["alexnet.data"]),
    ("inference", ["alexnet.inference"]),
    ("training", ["alexnet.train"]),
    (("analysis", "speed"), {"analysis": ["alexnet.analysis"], "speed": ["alexnet.bench"]}),
    ("commands", ["alexnet.cli", "alexnet.__main__", "alexnet.options", "alexnet.train.cli", "alexnet.bench.cli",
                  "alexnet.evaluate", "alexnet.predict", "alexnet.convert", "alexnet.convert_onnx", "alexnet.convert_caffe",
                  "alexnet.export"]),
]
# Commands: thin shells (``run(args)``, options) that no library module may import.
COMMAND_MODULES = {"alexnet.cli", "alexnet.__main__", "alexnet.evaluate", "alexnet.predict", "alexnet.convert",
                   "alexnet.convert_onnx", "alexnet.convert_caffe", "alexnet.export"}



def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def package_exports() -> dict[str, str]:
    """``alexnet/__init__.py``'s ``_EXPORTS``: the module each name ``from alexnet import X`` gives."""
    for node in ast.parse((PACKAGE / "__init__.py").read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_EXPORTS":
            return ast.literal_eval(node.value)
    return {}


def imports_of(name: str, path: Path, modules, exports) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for each import of a package module; in a module
    that calls ``importlib.import_module``, every string naming a package module counts as an import
    of it (a command dispatched by name), but for the package's lazy exports, counted at each importer."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    dispatches = name != "alexnet" and any(
        getattr(node, "attr", getattr(node, "id", None)) == "import_module" for node in ast.walk(tree))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([child.module] if child.module else []))
                for a in child.names:
                    full = f"{base}.{a.name}"
                    target = full if full in modules else exports.get(a.name, base) if base == "alexnet" else base
                    found.append((target, child.lineno, in_function))
            elif dispatches and isinstance(child, ast.Constant) and child.value in modules:
                found.append((child.value, child.lineno, True))
            visit(child, inner)

    visit(tree, False)
    return [(target, line, f) for target, line, f in found if target in modules and target != name]


def layer_of(module: str) -> tuple[int, str] | None:
    """(height, layer name) of a module, by its longest prefix in LAYERS; the package itself
    (``__version__``, lazy exports) is base."""
    best = (0, "base", "alexnet") if module == "alexnet" else None
    for height, (names, prefixes) in enumerate(LAYERS):
        groups = prefixes.items() if isinstance(prefixes, dict) else [(names, prefixes)]
        for layer, starts in groups:
            for start in starts:
                if (module == start or module.startswith(start + ".")) and (best is None or len(start) > len(best[2])):
                    best = (height, layer, start)
    return best[:2] if best else None


def is_command(module: str) -> bool:
    return module in COMMAND_MODULES or module.endswith(".cli")


def graph():
    modules, exports = module_files(), package_exports()
    return modules, {name: imports_of(name, path, modules, exports) for name, path in modules.items()}


def test_every_package_module_has_a_layer_and_every_command_is_in_the_top_one():
    modules, _ = graph()
    assert not [m for m in modules if layer_of(m) is None], "modules in no layer of LAYERS"
    assert all(layer_of(m)[1] == "commands" for m in modules if is_command(m))


def violations(modules, edges) -> dict[tuple[str, str], str]:
    """(importer, imported) -> where and which part of the rule it breaks."""
    found = {}
    for name, imported in edges.items():
        height, layer = layer_of(name)
        for target, line, in_function in imported:
            t_height, t_layer = layer_of(target)
            where = (f"{modules[name].name}:{line}: {name} ({layer}) imports {target} "
                     f"({t_layer}){' in a function' if in_function else ''}")
            if is_command(target) and layer != "commands":
                found[name, target] = f"{where}: a library module importing a command module"
            elif t_height > height or (t_height == height and t_layer != layer):
                found[name, target] = f"{where}: up a layer or across to a sibling layer"
    return found


def test_each_module_imports_only_its_own_layer_and_the_layers_below():
    found = violations(*graph())
    assert not found, "imports against docs/architecture.md's rule:\n" + "\n".join(found.values())


def circles(edges) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _, _ in edges.get(v, ()):
            if w not in index:
                connect(w)
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

    for v in edges:
        if v not in index:
            connect(v)
    return out


def test_no_modules_import_each_other_even_inside_functions():
    modules, edges = graph()
    described = ["; ".join(sorted({f"{name} -> {target} (line {line}{', in a function' if f else ''})"
                                   for name in component for target, line, f in edges[name] if target in component}))
                 for component in circles(edges)]
    assert not described, "import circles:\n" + "\n".join(described)


def test_no_package_module_is_over_400_lines():
    long = {str(path.relative_to(PACKAGE.parent)): n for path in module_files().values()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


MAX_TRAIN_MODULES = 7  # train/ in a few full modules (nanoGPT's train.py), not a sliver per thing the loop touches


def test_training_is_at_most_seven_modules_each_described_in_docs_architecture():
    train = sorted(m for m in module_files() if m.startswith("alexnet.train."))
    assert len(train) <= MAX_TRAIN_MODULES, f"{len(train)} modules in alexnet/train: {train}"
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    described = doc.split("**training.**")[1].split("**analysis.**")[0] + doc.split("**commands.**")[1]
    missing = [m for m in train if f"`{m.removeprefix('alexnet.')}`" not in described
               and f"`{m.rpartition('.')[2]}`" not in described]
    assert not missing, f"alexnet/train modules that docs/architecture.md does not describe: {missing}"


def test_the_rule_catches_an_import_up_a_layer_across_to_a_sibling_of_a_command_and_a_circle():
    edges = {"alexnet.model": [("alexnet.train.loop", 3, True)], "alexnet.train.loop": [("alexnet.model", 1, False)],
             "alexnet.bench.data": [("alexnet.analysis.runs", 5, False)],
             "alexnet.analysis.runs": [("alexnet.train.cli", 7, True), ("alexnet.evaluate", 8, False)]}
    modules = {name: Path(name.replace(".", "/") + ".py") for name in edges}
    assert sorted(violations(modules, edges)) == [("alexnet.analysis.runs", "alexnet.evaluate"),
                                                  ("alexnet.analysis.runs", "alexnet.train.cli"),
                                                  ("alexnet.bench.data", "alexnet.analysis.runs"),
                                                  ("alexnet.model", "alexnet.train.loop")]
    assert layer_of("alexnet.model") < layer_of("alexnet.train.loop")
    assert layer_of("alexnet.analysis.figures")[0] == layer_of("alexnet.bench.train")[0]
    assert layer_of("alexnet.analysis.figures")[1] != layer_of("alexnet.bench.train")[1]
    assert circles(edges) == [["alexnet.model", "alexnet.train.loop"]]


def test_a_module_dispatched_by_its_name_through_importlib_counts_as_imported(tmp_path):
    modules, edges = graph()
    assert ("alexnet.analysis.figures", True) in {(t, f) for t, _, f in edges["alexnet.cli"]}
    assert ("alexnet.bench.model", True) in {(t, f) for t, _, f in edges["alexnet.bench"]}
    assert not any(t == "alexnet.data" for t, _, _ in edges["alexnet.classes"])  # resources.files("alexnet.data")
    (tmp_path / "model.py").write_text('import importlib\nCOMMANDS = {"x": "alexnet.train.loop"}\n'
                                       'def run(n):\n    return importlib.import_module(COMMANDS[n])\n')
    found = imports_of("alexnet.model", tmp_path / "model.py", modules, {})
    assert sorted(violations(modules, {"alexnet.model": found})) == [("alexnet.model", "alexnet.train.loop")]
