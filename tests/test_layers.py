"""The package's layers import downwards only, and no module imports itself
back through others (README, "Repository layout").

ground (config, checks, protocols, isa) -> rtl -> boards, sim -> boardsim -> firmware -> bench -> cli (cli_common <- cli_dlrm <- cli)
"""

import ast
from pathlib import Path

import seedchip

ROOT = Path(seedchip.__file__).resolve().parent

#: layer of each top-level name; a module may import its own layer and lower ones
LAYERS = {
    "config": 0, "checks": 0, "protocol": 0, "emb_protocol": 0, "gather_params": 0,
    "isa": 0, "link_protocol": 0, "__init__": 0,
    "rtl": 1,
    "boards": 2, "sim": 2,
    "boardsim": 3,
    "firmware": 4,
    "bench": 5,
    "cli_common": 6, "cli_dlrm": 6, "cli": 6,
}
#: the one known exception: the testbench of the board's self test (SDRAMSelfTest
#: carries the board's gather exerciser)
ALLOWED = {("sim.sdram_bist_tb", "boards.sdram_bist"), ("sim.sdram_bist_tb", "boards")}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "build", ".venv") or rel.parts[0].startswith("."):
            continue
        name = ".".join(rel.with_suffix("").parts)
        yield name.removesuffix(".__init__"), path


def _imports(name, path, top_level_only):
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = parts[:len(parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("seedchip"):
                target = node.module.removeprefix("seedchip").lstrip(".")
            else:
                continue
            for a in node.names:
                full = f"{target}.{a.name}" if target else a.name
                yield full if (ROOT / Path(*full.split("."))).with_suffix(".py").exists() \
                    or (ROOT / Path(*full.split(".")) / "__init__.py").exists() else target
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("seedchip."):
                    yield a.name.removeprefix("seedchip.")


def _layer(module):
    return LAYERS.get(module.split(".")[0] or "__init__", 0)


def test_layers_import_downwards():
    wrong = []
    for name, path in _modules():
        for target in _imports(name, path, top_level_only=False):
            if not target or (name, target) in ALLOWED:
                continue
            if _layer(target) > _layer(name):
                wrong.append(f"{name} (layer {_layer(name)}) imports {target} "
                             f"(layer {_layer(target)})")
    assert wrong == []


def test_no_import_circles():
    # imports inside functions count: they are circles that merely wait
    graph = {name: set(_imports(name, path, top_level_only=False)) for name, path in _modules()}
    for name in graph:
        graph[name] = {t for t in graph[name] if t in graph and t != name}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_firmware_does_not_import_boards():
    # the host driver runs where no FPGA toolchain is installed; it reaches
    # the simulator (sim) but never the board builds
    wrong = [(name, t) for name, path in _modules() if name.startswith("firmware")
             for t in _imports(name, path, top_level_only=False) if t.split(".")[0] == "boards"]
    assert wrong == []
