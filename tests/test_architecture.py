"""The floor plan of ARCHITECTURE.md, checked from the source with `ast`, so the layering stays true.

Every .py file of the project (outside .venv) is parsed. Each import becomes an edge from a module to a module:
module level and inside functions, `import x` and `from x import y`, relative imports resolved, and
`from pkg import module` resolved to the module. Three rules follow:
(a) each room (a top-level package or one of its sub-folders) imports only the rooms its row of ROOMS allows, and the
    pure rooms of protocol/ import no stdlib module that does I/O, reads a clock or draws randomness;
(b) the imports form no cycle, whether at module level, under `if TYPE_CHECKING:` (a type is a dependency too) or
    inside a function (a lazy import hides a circle, it does not remove it);
(c) nothing outside tests/ imports tests/;
(d) outside tests/, an import of our own modules inside a function carries a comment saying why it is lazy, and a
    function over LONG_FUNCTION lines says in its docstring why it stays long.
A failure names the file, the line, the broken rule and how to fix it. The last tests feed the checker a small
synthetic tree with an upward import and a cycle, so they prove it can fail.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
PACKAGES = ("protocol", "p2pnet", "node", "subnets", "bench", "tests")
SKIP_TOP = {"build", "dist", "testnet"}  # outputs at the root (`make run` writes ./testnet), not code

# protocol/'s pure rooms: consensus-critical, so replayable bit for bit on any machine.
PURE_THIRD_PARTY = frozenset({"cbor2", "nacl", "numpy"})
IMPURE_STDLIB = frozenset({
    "asyncio", "datetime", "http", "io", "multiprocessing", "os", "pathlib", "random", "secrets", "select",
    "shutil", "signal", "socket", "sqlite3", "subprocess", "sys", "tempfile", "threading", "time", "urllib", "uuid",
})  # fmt: skip

PROTOCOL_ALL = ("protocol", "protocol.economics", "protocol.consensus", "protocol.state", "protocol.testing")
PROTOCOL_PRODUCT = PROTOCOL_ALL[:-1]
SUBNET_NEEDS = (*PROTOCOL_PRODUCT, "p2pnet", "node.client", "node.errors", "node.log", "subnets")


@dataclass(frozen=True)
class Room:
    """One row of the floor plan: what a folder may import. `may_import` names rooms, or single modules."""

    may_import: tuple[str, ...]
    third_party: frozenset[str] | None  # None: any installed distribution
    pure: bool  # no stdlib module that does I/O, reads a clock or draws randomness
    fix: str  # said in a failure: where the code belongs instead


# Longest prefix wins: protocol.state.x is in the room protocol.state, protocol.codec in the room protocol.
ROOMS: dict[str, Room] = {
    "protocol": Room(
        ("protocol",), PURE_THIRD_PARTY, True,
        "protocol's base (codec, crypto, errors, schema, messages) is the floor; move the shared piece down into it",
    ),
    "protocol.economics": Room(
        ("protocol", "protocol.economics"), PURE_THIRD_PARTY, True,
        "economics is arithmetic over base types; move what both need into protocol's base, or let the caller "
        "in protocol/consensus or protocol/state do the check",
    ),
    "protocol.consensus": Room(
        ("protocol", "protocol.economics", "protocol.consensus"), PURE_THIRD_PARTY, True,
        "the DAG rule never reads the ledger; pass what it needs in from the caller (node/ or protocol/state)",
    ),
    "protocol.state": Room(
        PROTOCOL_PRODUCT, PURE_THIRD_PARTY, True,
        "the state transition sits on top of protocol/; helpers it needs belong in protocol/, not above it",
    ),
    "protocol.testing": Room(
        PROTOCOL_ALL, PURE_THIRD_PARTY | {"hypothesis"}, False,
        "protocol.testing serves every floor, so it may only use protocol/",
    ),
    "p2pnet": Room(
        ("protocol", "p2pnet"), None, False,
        "p2pnet knows bytes and peers: only protocol's base (codec, crypto, errors, messages), never chain rules",
    ),
    "node": Room(
        (*PROTOCOL_PRODUCT, "p2pnet", "node", "node.client"), None, False,
        "the daemon sits under its tooling (cli, testnet, fuzz, testing) and under subnets/ (plug-ins via the "
        "'tensornet.commands' entry points); move the shared piece down into node/ or protocol/",
    ),
    "node.client": Room(
        (*PROTOCOL_PRODUCT, "node.client", "node.errors", "node.log"), None, False,
        "the client kit (what subnets/ and the CLI use) must not pull in the daemon; pass values in instead",
    ),
    "node.cli": Room(
        (*PROTOCOL_PRODUCT, "p2pnet", "node", "node.client", "node.cli", "node.testnet", "node.fuzz"), None, False,
        "the CLI wires node/ tools; subnet commands plug in through the 'tensornet.commands' entry points",
    ),
    "node.testnet": Room(
        (*PROTOCOL_PRODUCT, "p2pnet", "node", "node.client", "node.testnet"), None, False,
        "testnet tooling drives the daemon; it must not reach up into the CLI or the test harnesses",
    ),
    "node.fuzz": Room(
        (*PROTOCOL_ALL, "p2pnet", "node", "node.client", "node.testing", "node.fuzz"), None, False,
        "the fuzzer attacks protocol/, p2pnet/ and the daemon; shared helpers belong in a testing package",
    ),
    "node.testing": Room(
        (*PROTOCOL_ALL, "p2pnet", "node", "node.client", "node.testnet", "node.testing"), None, False,
        "node.testing harnesses the daemon; it must not depend on the CLI or subnets/",
    ),
    "subnets": Room(
        SUBNET_NEEDS, None, False,
        "subnets/ uses protocol/, p2pnet/ and node's client kit (node.client, node.errors, node.log) only",
    ),
    "subnets.cli": Room(
        (*SUBNET_NEEDS, "node.cli", "subnets.cli"), None, False,
        "subnet commands may use the CLI's helpers (node.cli) on top of what subnets/ may use",
    ),
    "bench": Room(
        (*PROTOCOL_ALL, "p2pnet", "node", "node.client", "node.cli", "node.testnet", "node.fuzz", "node.testing",
         "subnets", "subnets.cli", "bench"), None, False,
        "bench/ may use any product package; move a helper it needs out of tests/ into protocol.testing or "
        "node.testing",
    ),
    "tests": Room(tuple(), None, False, ""),  # tests/ may import everything: checked separately, never restricted
}


@dataclass(frozen=True)
class InnerRule:
    """An arrow inside one room: its modules must not import `targets`, except the modules under `exempt`."""

    room: str
    targets: tuple[str, ...]
    exempt: tuple[str, ...]
    rule: str
    fix: str


INNER_RULES = (
    InnerRule(
        "protocol.state", ("protocol.state.transition", "protocol.state.handlers"),
        ("protocol.state.transition", "protocol.state.handlers"),
        "the state data never imports its processing (only transition.py and handlers/ use handlers/)",
        "give the data a primitive (a method on the record) and let the handler call it",
    ),
    InnerRule(
        "protocol.state", ("protocol.state.state",), ("protocol.state.transition", "protocol.state.handlers"),
        "the records the state is made of (genesis, escrow, governance, lifecycle, ...) never import State; "
        "state.py imports them (spec/state.md)",
        "take the values you need as arguments, or move the rule into a handler",
    ),
    InnerRule(
        "node", ("node.daemon",), (),
        "node/daemon.py only wires the daemon's parts; none of them imports it (the API sees node/api/view.py)",
        "take what you need as an argument or through the narrow view, and let daemon.py pass it in",
    ),
)  # fmt: skip


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class Edge:
    """One import: `source` (a module of ours) imports `target` at `path:line`."""

    source: str
    target: str  # a module of ours, or the top-level name of a stdlib/third-party package
    path: Path  # relative to the scanned root
    line: int

    @property
    def where(self) -> str:
        return f"{self.path.as_posix()}:{self.line}"


@dataclass
class Project:
    modules: dict[str, Path]  # dotted name -> path relative to root
    edges: list[Edge]


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_files(root: Path) -> list[Path]:
    """Every .py file under root, outside virtual environments, caches and hidden folders."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        folders = rel.parts[:-1]
        if folders[:1] and folders[0] in SKIP_TOP:
            continue
        if any(p == "__pycache__" or p.startswith(".") or p.endswith(".egg-info") for p in folders):
            continue
        out.append(rel)
    return out


def _targets(node: ast.Import | ast.ImportFrom, source: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The modules one import statement loads: `from pkg import module` resolves to pkg.module."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = source.split(".") if is_package else source.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def scan(root: Path) -> Project:
    files = python_files(root)
    modules = {module_name(rel): rel for rel in files}
    edges = []
    for name, rel in modules.items():
        tree = ast.parse((root / rel).read_text(encoding="utf-8"), filename=str(rel))
        for node in ast.walk(tree):  # module level, under `if`, in classes and in functions alike
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(node, name, rel.name == "__init__.py", modules):
                    edges.append(Edge(name, target, rel, node.lineno))
    return Project(modules, list(dict.fromkeys(edges)))  # `from m import a, b` is one edge


def is_own(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def room_of(module: str) -> str | None:
    """The longest ROOMS key that is the module or a package above it."""
    matches = [r for r in ROOMS if module == r or module.startswith(r + ".")]
    return max(matches, key=len) if matches else None


def _allowed(room: Room, target: str) -> bool:
    target_room = room_of(target)
    return any(entry == target_room or target == entry or target.startswith(entry + ".") and entry not in ROOMS
               for entry in room.may_import)


def layering_violations(project: Project) -> list[str]:
    """Rule (a): every import goes to a room the importer's row allows; pure rooms stay pure."""
    out = []
    for name, rel in project.modules.items():
        if room_of(name) is None:
            out.append(f"{rel.as_posix()}: module '{name}' is in no room of the floor plan. Fix: put it under one "
                       f"of {', '.join(PACKAGES)}, or add a row to ROOMS here and a codemap entry in ARCHITECTURE.md.")
    for e in project.edges:
        out += [
            f"{e.where}: {e.source} imports {e.target}; rule: {r.rule}. Fix: {r.fix}."
            for r in INNER_RULES
            if room_of(e.source) == r.room and _under(e.target, r.targets) and not _under(e.source, r.exempt)
        ]
        src_room_name = room_of(e.source)
        if src_room_name is None or src_room_name == "tests":
            continue
        room = ROOMS[src_room_name]
        top = e.target.split(".")[0]
        if is_own(e.target):
            if top == "tests" or _allowed(room, e.target):
                continue  # tests/ imports are rule (c)
            out.append(f"{e.where}: {src_room_name} imports {e.target} (room {room_of(e.target)}); "
                       f"rule: {src_room_name} may import only {', '.join(room.may_import)}. Fix: {room.fix}.")
        elif top in sys.stdlib_module_names:
            if room.pure and top in IMPURE_STDLIB:
                out.append(f"{e.where}: {src_room_name} imports '{top}'; rule: protocol/ is pure (no I/O, wall clock "
                           f"or unseeded randomness). Fix: let node/ do the I/O and pass the result in as a value.")
        elif room.third_party is not None and top not in room.third_party and top != "__future__":
            out.append(f"{e.where}: {src_room_name} imports third-party '{top}'; rule: {src_room_name} may use only "
                       f"the stdlib and {', '.join(sorted(room.third_party))}. Fix: move this code out of protocol/.")
    return out


def product_imports_of_tests(project: Project) -> list[str]:
    """Rule (c): tests/ is a leaf; helpers that product code needs live in protocol.testing or node.testing."""
    return [
        f"{e.where}: {e.source} imports {e.target}; rule: nothing outside tests/ imports tests/. Fix: move the helper "
        f"into protocol/testing/ (pure helpers) or node/testing/ (processes, chains) and import it from there."
        for e in project.edges
        if e.target.split(".")[0] == "tests" and room_of(e.source) != "tests"
    ]


def _explained(lines: list[str], import_lines: set[int], node: ast.Import | ast.ImportFrom) -> bool:
    """A `#` comment on the import, or on the lines just above it: its block of imports or the `try:` around it."""
    if any("#" in lines[i - 1] for i in range(node.lineno, (node.end_lineno or node.lineno) + 1)):
        return True
    for i in range(node.lineno - 1, 0, -1):
        line = lines[i - 1].strip()
        if "#" in line:
            return True
        if line and i not in import_lines and line != "try:":
            return False
    return False


def unexplained_lazy_imports(project: Project, root: Path) -> list[str]:
    """Rule (d): own-module imports sit at the top of the file; one inside a function says why (start-up time,
    an optional extra) in a comment, so whoever reads it knows not to hoist it."""
    out = []
    for name, rel in project.modules.items():
        if room_of(name) == "tests":
            continue
        text = (root / rel).read_text(encoding="utf-8")
        lines = text.splitlines()
        functions = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        imports = {n for f in functions for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)}
        import_lines = {i for n in imports for i in range(n.lineno, (n.end_lineno or n.lineno) + 1)}
        for node in sorted(imports, key=lambda n: n.lineno):
            own = [t for t in _targets(node, name, rel.name == "__init__.py", project.modules) if is_own(t)]
            if own and not _explained(lines, import_lines, node):
                out.append(f"{rel.as_posix()}:{node.lineno}: {name} imports {own[0]} inside a function with no "
                           f"comment; rule: own-module imports sit at the top of the file. Fix: move it to the top, "
                           f"or say why it is lazy in a comment on it (`# start-up time: torch`, an optional extra).")
    return out


LONG_FUNCTION = 80  # lines, decorators excluded


def unexplained_long_functions(project: Project, root: Path) -> list[str]:
    """Rule (d): small, named things. A function over LONG_FUNCTION lines says why in its docstring (its word
    `long`, or how many lines), e.g. a transcription read line by line beside another implementation, or a hot loop
    where each call costs."""
    out = []
    for name, rel in project.modules.items():
        if room_of(name) == "tests":
            continue
        for node in ast.walk(ast.parse((root / rel).read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            doc = (ast.get_docstring(node) or "").lower()
            if length > LONG_FUNCTION and "long" not in doc and " lines" not in doc:
                out.append(f"{rel.as_posix()}:{node.lineno}: {node.name} is {length} lines; rule: no function over "
                           f"{LONG_FUNCTION} lines without a reason in its docstring. Fix: split it where its steps "
                           f"part, or say in its docstring why it stays long.")
    return out


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit); returns components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _one_cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first within the component)."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle found in strongly connected {component}")


def cycles(project: Project) -> list[str]:
    """Rule (b): imports between our modules form no cycle (lazy and TYPE_CHECKING ones included)."""
    graph: dict[str, set[str]] = defaultdict(set)
    first: dict[tuple[str, str], Edge] = {}
    for e in project.edges:
        if e.target in project.modules and e.target != e.source:
            graph[e.source].add(e.target)
            first.setdefault((e.source, e.target), e)
    for name in project.modules:
        graph.setdefault(name, set())
    out = []
    for component in _strongly_connected(graph):
        path = _one_cycle(component, graph)
        steps = "; ".join(f"{first[(a, b)].where} imports {b}" for a, b in zip(path, path[1:], strict=False))
        out.append(f"import cycle among {', '.join(component)}: {steps}. Rule: arrows only go down. Fix: move what "
                   f"both sides need into a lower module, or pass it in as a value or a typing.Protocol defined "
                   f"below both (a TYPE_CHECKING or function-level import hides the circle, it does not remove it).")
    return out


def pure_arithmetic_violations(project: Project, root: Path) -> list[str]:
    """Integer arithmetic in consensus: no float literal, float() or true division in protocol's pure sub-rooms."""
    out = []
    for name, rel in project.modules.items():
        if room_of(name) not in ("protocol.consensus", "protocol.economics", "protocol.state"):
            continue
        for node in ast.walk(ast.parse((root / rel).read_text(encoding="utf-8"))):
            what = None
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                what = f"float literal {node.value!r}"
            elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
                what = "true division '/'"
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float":
                what = "float()"
            if what:
                out.append(f"{rel.as_posix()}:{node.lineno}: {what}; rule: consensus arithmetic is integer (floats "
                           f"round differently across machines). Fix: use '//' or protocol/economics/fixedpoint.py.")
    return out


def _fail_if(problems: list[str], what: str) -> None:
    assert not problems, f"{len(problems)} {what}:\n" + "\n".join(problems)


# --- the real tree ------------------------------------------------------------------------------------------------

PROJECT = scan(ROOT)


def test_scan_sees_the_whole_project() -> None:
    landmarks = {"protocol.codec", "node.daemon", "node.testnet.gen", "p2pnet.host", "subnets.miner", "bench.yuma"}
    assert landmarks | {"tests.test_architecture"} <= set(PROJECT.modules)
    assert len(PROJECT.edges) > 500, "the scan found suspiciously few imports"


def test_rooms_import_only_what_the_floor_plan_allows() -> None:
    _fail_if(layering_violations(PROJECT), "imports break the floor plan (ARCHITECTURE.md)")


def test_no_import_cycles() -> None:
    _fail_if(cycles(PROJECT), "import cycles")


def test_nothing_outside_tests_imports_tests() -> None:
    _fail_if(product_imports_of_tests(PROJECT), "product imports of tests/")


def test_lazy_own_imports_say_why() -> None:
    _fail_if(unexplained_lazy_imports(PROJECT, ROOT), "unexplained function-level imports of our own modules")


def test_long_functions_say_why() -> None:
    _fail_if(unexplained_long_functions(PROJECT, ROOT), "functions over 80 lines with no reason in their docstring")


def test_consensus_arithmetic_is_integer() -> None:
    _fail_if(pure_arithmetic_violations(PROJECT, ROOT), "non-integer arithmetic in protocol/")


# --- the checker can fail -----------------------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> Project:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return scan(root)


CLEAN = {
    "protocol/__init__.py": "",
    "protocol/codec.py": "import struct\nimport cbor2\n",
    "protocol/state/__init__.py": "",
    "protocol/state/data.py": "from protocol import codec\n",
    "protocol/state/transition.py": "from . import data\nfrom ..codec import *\n",
    "node/__init__.py": "",
    "node/daemon.py": "import trio\nfrom protocol.state import transition\n",
    "tests/__init__.py": "",
    "tests/helpers.py": "import node.daemon\n",
    ".venv/lib/bad.py": "import tests.helpers\n",
    "testnet/node0/x.py": "import tests.helpers\n",
}


def test_checker_passes_a_clean_tree_and_resolves_imports(tmp_path: Path) -> None:
    project = _tree(tmp_path, CLEAN)
    assert not any(m.startswith((".venv", "testnet")) for m in project.modules), ".venv and ./testnet are skipped"
    targets = {(e.source, e.target) for e in project.edges}
    assert ("protocol.state.transition", "protocol.state.data") in targets, "relative `from . import module`"
    assert ("protocol.state.transition", "protocol.codec") in targets, "relative `from ..module import *`"
    assert ("node.daemon", "protocol.state.transition") in targets, "`from pkg import module` is the module"
    assert layering_violations(project) == [] and cycles(project) == [] and product_imports_of_tests(project) == []
    assert unexplained_lazy_imports(project, tmp_path) == []
    long_but_said = "def f():\n    \"\"\"Long on purpose: a transcription.\"\"\"\n" + "    x = 1\n" * 90
    assert unexplained_long_functions(_tree(tmp_path, {"node/long.py": long_but_said}), tmp_path) == []


def test_checker_catches_an_upward_import_a_cycle_and_a_tests_import(tmp_path: Path) -> None:
    project = _tree(tmp_path, {
        **CLEAN,
        "protocol/codec.py": "import struct\n\ndef f():\n    from node.daemon import Node\n",  # upward, lazily
        "protocol/state/data.py": "from protocol.state.transition import apply\n",  # data <-> transition
        "protocol/consensus/__init__.py": "",
        "protocol/consensus/dag.py": "import time\nfrom protocol.state import data\nx = 1 / 2\n",
        "node/daemon.py": "import subnets.miner\n",
        "node/api.py": "from node.daemon import Node\n",
        "node/cli.py": "def a():\n    import trio  # start-up time\n\n    from node import api\n\n"  # explained
                       "def b():\n    try:  # an optional extra\n        from node import api\n"  # explained
                       "    except ImportError:\n        pass\n\n"
                       "def c():\n    \"\"\"Doc.\"\"\"\n    from node import api\n",  # not explained
        "subnets/__init__.py": "",
        "subnets/miner.py": "def run():\n" + "    x = 1\n" * 81,
        "bench/__init__.py": "",
        "bench/b.py": "from tests import helpers\n",
    })  # fmt: skip
    layering = "\n".join(layering_violations(project))
    assert "protocol/codec.py:4: protocol imports node.daemon (room node)" in layering
    assert "protocol/consensus/dag.py:2: protocol.consensus imports protocol.state.data" in layering
    assert "protocol/consensus/dag.py:1: protocol.consensus imports 'time'; rule: protocol/ is pure" in layering
    assert "node/daemon.py:1: node imports subnets.miner" in layering and "entry points" in layering
    assert "node/api.py:1: node.api imports node.daemon; rule: node/daemon.py only wires" in layering
    assert "protocol/state/data.py:1: protocol.state.data imports protocol.state.transition; rule: the state data" in (
        layering
    )
    (cycle,) = cycles(project)
    assert "protocol/state/data.py:1 imports protocol.state.transition" in cycle
    assert "protocol/state/transition.py:1 imports protocol.state.data" in cycle
    (tests_import,) = product_imports_of_tests(project)
    assert tests_import.startswith("bench/b.py:1: bench.b imports tests.helpers; rule: nothing outside tests/")
    (long_function,) = unexplained_long_functions(project, tmp_path)
    assert long_function.startswith("subnets/miner.py:1: run is 82 lines; rule: no function over 80 lines")
    lazy = [line.split(";")[0] for line in unexplained_lazy_imports(project, tmp_path)]
    assert lazy == ["node/cli.py:14: node.cli imports node.api inside a function with no comment",
                    "protocol/codec.py:4: protocol.codec imports node.daemon inside a function with no comment"]
    (division,) = pure_arithmetic_violations(project, tmp_path)
    assert division.startswith("protocol/consensus/dag.py:3: true division")


def test_checker_sees_a_cycle_through_a_lazy_or_type_checking_import(tmp_path: Path) -> None:
    project = _tree(tmp_path, {
        **CLEAN,
        "node/api.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from node.daemon import Node\n",
        "node/daemon.py": "class Node:\n    def serve(self):\n        from node import api\n",
    })  # fmt: skip
    (cycle,) = cycles(project)
    assert "node/api.py:3 imports node.daemon; node/daemon.py:3 imports node.api" in cycle
