"""The shape of the code: imports point one way and no module reaches into another's privates.

Every module of ``localpref/`` and ``tui/`` is read with ``ast`` (nothing is imported), and every
import counts: at the top, inside a function (a lazy import is still a dependency), and under
``if TYPE_CHECKING:`` (a type checker follows it like any other).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("localpref", "tui")

#: ``(importing module, imported module, private name)`` reach-ins that exist today in files
#: other sessions are rewriting (issue 15, "Reach-ins"). The list may only shrink: each entry
#: goes once the owning module makes the name public. Nothing may be added to it.
KNOWN_REACH_INS: frozenset[tuple[str, str, str]] = frozenset()

#: ``(module, attribute)``: private attributes a module reads on objects it did not make, known
#: today. Also only to shrink.
KNOWN_PRIVATE_ATTRIBUTE_READS: frozenset[tuple[str, str]] = frozenset({
    # argparse has no public name for the type of ``add_subparsers()``: here to stay.
    ("localpref.commands.generate", "_SubParsersAction"),
})
#: Underscored names that are public API (namedtuple's methods; ``os._exit``, leaving without
#: the interpreter's finalisation).
PUBLIC_UNDERSCORED = frozenset({"_replace", "_asdict", "_fields", "_make", "_exit"})


@dataclass(frozen=True)
class Import:
    """One import statement's target, as the importing module sees it."""

    module: str  # the module imported (a module of the project)
    names: tuple[str, ...]  # the names taken from it with ``from ... import``; () for ``import``
    line: int


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages by dotted name (``localpref.evaluation.grid``)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name ``from`` imports from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(path):
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The project modules ``module`` imports, wherever in the file the import stands.

    ``from a.b import c`` is an import of ``a.b.c`` when that is a module, else of ``a.b``
    (with ``c`` a name taken from it). ``import a.b.c`` is an import of ``a.b.c``. A package's
    ``__init__`` that Python runs on the way to a submodule is not counted as imported.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    yield Import(alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, path, node)
            taken: list[str] = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    yield Import(submodule, (), node.lineno)
                else:
                    taken.append(alias.name)
            if taken and source in modules:
                yield Import(source, tuple(taken), node.lineno)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    modules = project_modules()
    return {name: {i.module for i in imports_of(name, path, modules)} - {name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) through each strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    found = []
    for group in groups:
        start = min(group)
        # The shortest way back to ``start`` inside the group (breadth first).
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for node in frontier:
                for target in sorted(graph[node] & group):
                    if target not in previous:
                        previous[target] = node
                        following.append(target)
            frontier = following
        path = [start]
        node = previous[start]
        while node != start:
            path.append(node)
            node = previous[node]
        path.append(start)
        found.append(list(reversed(path)))
    return sorted(found)


def reach_ins(modules: dict[str, Path] | None = None) -> set[tuple[str, str, str]]:
    """``(importer, imported, name)`` for every private name one module takes from another
    (among ``modules``: the project's by default)."""
    modules = project_modules() if modules is None else modules
    found = set()
    for name, path in modules.items():
        for item in imports_of(name, path, modules):
            for taken in item.names:
                if taken.startswith("_") and not taken.startswith("__") and item.module != name:
                    found.add((name, item.module, taken))
    return found


def private_attribute_reads() -> set[tuple[str, str]]:
    """``(module, attribute)`` for every ``x._name`` a module reads where ``x`` is not ``self``
    or ``cls`` and the module itself defines or assigns no ``_name``: a reach into another
    module's object."""
    found = set()
    for name, path in project_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            attribute = node.attr
            if (not attribute.startswith("_") or attribute.startswith("__")
                    or attribute in own or attribute in PUBLIC_UNDERSCORED):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            found.add((name, attribute))
    return found


def test_the_walk_sees_every_kind_of_import() -> None:
    graph = import_graph()
    # A top-level import, a function-level one, and one through a package.
    assert "localpref.errors" in graph["localpref.evaluation.grid"]
    assert "localpref.engine" in graph["localpref.evaluation.grid"]  # inside a method
    assert "localpref.evaluation.grid" in graph["localpref.evaluation"]
    assert {"tui", "localpref"} <= {name.split(".")[0] for name in graph}


def test_the_cycle_finder_finds_a_cycle_and_only_that() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_in_localpref_or_tui() -> None:
    found = cycles(import_graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


#: The one library module that may import the app: the ``chat`` command opens it (lazily).
APP_LAUNCHER = "localpref.commands.chat"


def test_the_library_imports_the_app_only_from_the_chat_command() -> None:
    graph = import_graph()
    upward = sorted((name, target) for name, targets in graph.items()
                    if name.split(".")[0] == "localpref" and name != APP_LAUNCHER
                    for target in targets if target.split(".")[0] == "tui")
    assert not upward, upward
    assert "tui.app" in graph[APP_LAUNCHER]


def third_party_imports(package: str) -> list[tuple[str, str]]:
    """``(module, top-level package imported)`` for every import of ``package`` (``textual``,
    ``ray``...) by a module of ``localpref``, lazy ones included."""
    found = []
    for name, path in project_modules().items():
        if name.split(".")[0] != "localpref":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            else:
                continue
            found += [(name, t.split(".")[0]) for t in targets if t.split(".")[0] == package]
    return found


def test_the_library_never_imports_textual() -> None:
    assert third_party_imports("textual") == []


#: The web stack is imported by the server package alone; Ray by the Ray path alone.
WEB_STACK = ("fastapi", "starlette", "uvicorn", "pydantic")
RAY_PATH = "localpref.batches.ray_runner"


def test_only_the_server_imports_the_web_stack_and_only_the_ray_path_imports_ray() -> None:
    web = [found for package in WEB_STACK for found in third_party_imports(package)
           if not found[0].startswith("localpref.server")]
    assert web == []
    ray = third_party_imports("ray")
    assert ray and {module for module, _ in ray} == {RAY_PATH}


#: The module that loads llama-cpp-python for the library (with libgomp's settings), and the
#: launcher of llama-cpp-python's own server, the bench's baseline, a process of its own.
LLAMA_LOADERS = {"localpref.llama_library", "localpref.server.baseline"}


def test_llama_cpp_is_loaded_through_the_library_module_alone() -> None:
    """Imported anywhere else first, libgomp would load without its settings."""
    importers = {module for module, _ in third_party_imports("llama_cpp")}
    assert importers == LLAMA_LOADERS


def test_the_import_finder_sees_a_lazy_third_party_import() -> None:
    assert ("localpref.server.app", "fastapi") in third_party_imports("fastapi")
    assert (RAY_PATH, "ray") in third_party_imports("ray")  # inside functions only


def test_no_module_takes_another_modules_private_names() -> None:
    found = reach_ins()
    new = sorted(found - KNOWN_REACH_INS)
    assert not new, "private names taken from another module (make them public where they " \
        "live):\n" + "\n".join(f"{a} takes {c} from {b}" for a, b, c in new)


def test_the_list_of_known_reach_ins_only_holds_reach_ins_that_exist() -> None:
    gone = sorted(KNOWN_REACH_INS - reach_ins())
    assert not gone, f"fixed, so remove from KNOWN_REACH_INS: {gone}"


def test_no_module_reads_private_attributes_of_objects_it_did_not_make() -> None:
    new = sorted(private_attribute_reads() - KNOWN_PRIVATE_ATTRIBUTE_READS)
    assert not new, "private attributes read on another module's objects (make them public " \
        "where they live):\n" + "\n".join(f"{module} reads .{name}" for module, name in new)


def test_the_list_of_known_private_attribute_reads_only_holds_reads_that_exist() -> None:
    gone = sorted(KNOWN_PRIVATE_ATTRIBUTE_READS - private_attribute_reads())
    assert not gone, f"fixed, so remove from KNOWN_PRIVATE_ATTRIBUTE_READS: {gone}"


def test_the_reach_in_finder_sees_a_private_name_taken_anywhere_in_a_file(tmp_path) -> None:
    (tmp_path / "owner.py").write_text("_shared = 1\n", encoding="utf-8")
    (tmp_path / "user.py").write_text(
        "from owner import public\n\ndef f():\n    from owner import _shared\n", encoding="utf-8")
    modules = {"owner": tmp_path / "owner.py", "user": tmp_path / "user.py"}
    assert reach_ins(modules) == {("user", "owner", "_shared")}
