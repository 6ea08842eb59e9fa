"""The package layout shows the architecture: imports only go down the stages, and never in a circle.

Stages, lowest first: the nouns and file helpers; the config; the painter and the critic; the judge; the loop; pair
synthesis; training; the command line. Every import counts, also those inside functions and ``TYPE_CHECKING``
blocks: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import artaug

ROOT = Path(artaug.__file__).parent
# Module prefix -> stage; the longest matching prefix wins.
STAGES = {
    "artaug.types": 0,
    "artaug.settings": 0,
    "artaug.files": 0,
    "artaug.devices": 0,
    "artaug.config": 1,
    "artaug.provenance": 1,
    "artaug.pngmeta": 1,
    "artaug.tiny": 2,
    "artaug.painter": 2,
    "artaug.critic": 2,
    "artaug.judge": 3,
    "artaug.world": 2,  # the closed world's scenes, detector, critic and metric: a critic (``--critic world``)
    "artaug.loop": 4,
    "artaug.synth": 5,
    "artaug.eval": 5.5,  # evaluation paints (loop) and reads synth stores; the bootstrap's gate uses it
    "artaug.world.build": 6,  # training the world's painter uses the trainer's flow-matching pieces
    "artaug.world.train": 6,
    "artaug.world.bench": 7,  # the world's benchmark runs the loop, synthesis and training
    "artaug.world.distill": 7,  # pairs synthesised and distilled into a LoRA, for the bench
    "artaug.train": 6,
    "artaug.cli": 8,
    "artaug.studio": 8,  # a door, like the command line
    "artaug": 8,  # the package facade (``artaug.paint``) sits on top
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(name: str) -> str | None:
    """The artaug module a dotted import refers to (a package is its ``__init__``), or None outside artaug."""
    if name != "artaug" and not name.startswith("artaug."):
        return None
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]  # ``from artaug.x import y`` where y is a name, not a module
    return name


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {resolve(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {resolve(f"{node.module}.{alias.name}") for alias in node.names}
    return found - {None}


def stage(module: str) -> int:
    prefix = max((p for p in STAGES if module == p or module.startswith(p + ".")), key=len)
    return STAGES[prefix]


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {module: imports(path) - {module} for module, path in MODULES.items()}


def test_imports_only_go_down_the_stages():
    upward = [
        f"{module} (stage {stage(module)}) imports {target} (stage {stage(target)})"
        for module, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if stage(target) > stage(module)
    ]
    assert upward == []


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_a_newcomer_finds_each_stage_by_its_folder():
    for folder in ("painter", "critic", "judge", "loop", "synth", "train", "cli"):
        assert (ROOT / folder / "__init__.py").is_file(), folder
    assert (ROOT / "synth" / "store.py").is_file()
    files = sorted(p.name for p in ROOT.glob("*.py"))
    assert files == ["__init__.py", "config.py", "devices.py", "files.py", "pngmeta.py", "provenance.py",
                     "settings.py", "types.py"]  # fmt: skip


def test_one_class_per_name():
    """Two classes that share a name (three ``Critic``s once) make every reader ask which one is meant."""
    where: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(module)
    assert {name: places for name, places in where.items() if len(places) > 1} == {}
