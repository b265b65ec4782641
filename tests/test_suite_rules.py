"""Rules the test suite keeps about itself, checked by reading its source with ``ast``.

Why: pytest-timeout kills a test with a thread dump that says nothing about what the test was waiting for;
every bounded wait in a test fails with its own message about what it last saw. So every test's bounded
waits, summed, must fire before its pytest timeout does -- otherwise the slow run's report is the dump. And no
test may skip or xfail: a missing component fails, saying how to install it.

What counts as a test's waits (an upper bound of its sequential waits): in the test, in every fixture it
requests (transitively, autouse included, at any scope: a module fixture's setup runs inside the first
test's timeout), and in every function of the test tree or ``kray.dev`` they call: literal numbers passed
as ``timeout=``/``grace=``/``kill_wait=``/``seconds=``, ``asyncio.timeout(N)``, ``asyncio.wait_for(x, N)``,
``sleep(N)``, ``monotonic() + N`` deadlines, module constants standing for those numbers, and the defaults of
a called helper's timeout parameters when the call does not pass them. A wait inside ``for _ in range(N)``
(or over a literal list) counts N times; inside any other loop, once.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SOURCES = [*sorted(TESTS.rglob("*.py")), *sorted((ROOT / "kray" / "dev").glob("*.py"))]
WAIT_PARAMS = frozenset({"timeout", "grace", "kill_wait", "seconds"})
# Time a test spends outside its bounded waits (spawning, parsing, asserting) before pytest-timeout fires.
SLACK_SECONDS = 15.0


def global_timeout() -> float:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return float(options["timeout"])


def _number(node: ast.AST | None) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    classes: dict[str, dict[str, ast.FunctionDef | ast.AsyncFunctionDef]] = field(default_factory=dict)
    constants: dict[str, float] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alias -> (module, name or None)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _load(path: Path) -> Module:
    module = Module(_module_name(path), path, ast.parse(path.read_text(), filename=str(path)))
    package = module.name if path.name == "__init__.py" else module.name.rpartition(".")[0]
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            module.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            module.classes[node.name] = {
                n.name: n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            }
        elif isinstance(node, ast.Assign | ast.AnnAssign) and (value := _number(node.value)) is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    module.constants[target.id] = value
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (base, alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module.imports[alias.asname or alias.name] = (alias.name, None)
    return module


MODULES = {m.name: m for m in map(_load, SOURCES)}
Func = tuple[Module, ast.FunctionDef | ast.AsyncFunctionDef, str | None]  # module, def, enclosing class


def _lookup(module: Module, name: str) -> tuple[Module, str] | Module | None:
    """What ``name`` means in ``module``: (module, top-level name) or an indexed module; None if not ours."""
    if name in module.functions or name in module.constants or name in module.classes:
        return module, name
    if name in module.imports:
        target, attr = module.imports[name]
        if attr is None:
            return MODULES.get(target)
        if f"{target}.{attr}" in MODULES:
            return MODULES[f"{target}.{attr}"]
        if target in MODULES:
            return MODULES[target], attr
    return None


def _constant(module: Module, node: ast.AST) -> float | None:
    if (value := _number(node)) is not None:
        return value
    found = _lookup(module, node.id) if isinstance(node, ast.Name) else None
    if isinstance(found, tuple) and found[1] in found[0].constants:
        return found[0].constants[found[1]]
    return None


def _resolve(func: Func, call: ast.Call) -> Func | None:
    module, _, cls = func
    target = call.func
    if isinstance(target, ast.Name):
        found = _lookup(module, target.id)
        if isinstance(found, tuple) and found[1] in found[0].functions:
            return found[0], found[0].functions[found[1]], None
    elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        if target.value.id == "self" and cls is not None and target.attr in module.classes[cls]:
            return module, module.classes[cls][target.attr], cls
        if (instance := _instances(func).get(target.value.id)) is not None:
            owner, name = instance
            method = owner.classes[name].get(target.attr)
            return None if method is None else (owner, method, name)
        found = _lookup(module, target.value.id)
        if isinstance(found, Module) and target.attr in found.functions:
            return found, found.functions[target.attr], None
    return None


_INSTANCES: dict[int, dict[str, tuple[Module, str]]] = {}


def _instances(func: Func) -> dict[str, tuple[Module, str]]:
    """Names in ``func`` bound to an instance of a class of the index: annotated parameters (a fixture's
    ``local: Local``), ``x = C(...)`` and ``with C(...) as x``."""
    module, node, _ = func
    if id(node) in _INSTANCES:
        return _INSTANCES[id(node)]

    def of(expr: ast.AST | None) -> tuple[Module, str] | None:
        name = (
            expr.value
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str)
            else _dotted(expr or ast.expr())
        )
        found = _lookup(module, name) if name and "." not in name else None
        return found if isinstance(found, tuple) and found[1] in found[0].classes else None

    found: dict[str, tuple[Module, str]] = {}
    for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
        if (hit := of(arg.annotation)) is not None:
            found[arg.arg] = hit
    for n in ast.walk(node):
        pairs: list[tuple[ast.AST, ast.AST | None]] = []
        if isinstance(n, ast.Assign) and len(n.targets) == 1:
            pairs.append((n.targets[0], n.value))
        elif isinstance(n, ast.With | ast.AsyncWith):
            pairs += [(item.optional_vars, item.context_expr) for item in n.items if item.optional_vars]
        for var, value in pairs:
            if isinstance(var, ast.Name) and isinstance(value, ast.Call) and (hit := of(value.func)) is not None:
                found[var.id] = hit
    _INSTANCES[id(node)] = found
    return found


def _wait_params(module: Module, node: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, float]:
    """The callee's timeout-like parameters and their literal defaults (0 when required)."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(positional, defaults, strict=True), *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    return {a.arg: (_constant(module, d) if d else None) or 0.0 for a, d in pairs if a.arg in WAIT_PARAMS}


def _loop_count(module: Module, loop: ast.For | ast.AsyncFor) -> float:
    it = loop.iter
    if isinstance(it, ast.List | ast.Tuple | ast.Set):
        return float(len(it.elts))
    if isinstance(it, ast.Call) and _dotted(it.func) == "range" and it.args:
        bounds = [_constant(module, a) for a in it.args]
        if all(b is not None for b in bounds):
            start, stop = (0.0, bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
            return max(1.0, (stop or 0.0) - (start or 0.0))
    return 1.0


def budget(
    func: Func, bound: dict[str, float] | None = None, stack: frozenset[int] = frozenset(), seen: set[int] | None = None
) -> float:
    """Upper bound of the seconds ``func`` spends in bounded waits, with ``bound`` wait parameters passed.

    ``seen``: helpers without a timeout parameter already counted for this test. Such a helper counts once
    per test (``Local.call`` starting the server if it is not running waits the first time only); a helper
    with a timeout parameter is a wait and counts at every call.
    """
    seen = set() if seen is None else seen
    module, node, _ = func
    if id(node) in stack:
        return 0.0
    stack |= {id(node)}
    own = _wait_params(module, node)
    total = sum({**own, **(bound or {})}.get(name, 0.0) for name in own)

    def visit(n: ast.AST, times: float) -> float:
        seconds = 0.0
        if isinstance(n, ast.For | ast.AsyncFor):
            times *= _loop_count(module, n)
        if isinstance(n, ast.Call):
            seconds += times * _call(func, n, own, stack, seen)
        elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):
            for clock, limit in ((n.left, n.right), (n.right, n.left)):
                if isinstance(clock, ast.Call) and _dotted(clock.func).endswith(("monotonic", "time.time")):
                    seconds += times * (_constant(module, limit) or 0.0)
        children = [] if isinstance(n, ast.ClassDef) else ast.iter_child_nodes(n)  # a local class is a fake
        return seconds + sum(visit(child, times) for child in children)

    return total + sum(visit(statement, 1.0) for statement in node.body)


def _call(func: Func, call: ast.Call, own: dict[str, float], stack: frozenset[int], seen: set[int]) -> float:
    module = func[0]
    callee = _resolve(func, call)
    if callee is not None:
        params = _wait_params(callee[0], callee[1])
        if not params:
            if id(callee[1]) in seen:
                return 0.0
            seen.add(id(callee[1]))
        positional = [a.arg for a in [*callee[1].args.posonlyargs, *callee[1].args.args]]
        if callee[2] is not None and positional and positional[0] in {"self", "cls"}:
            positional = positional[1:]
        passed = {**dict(zip(positional, call.args, strict=False)), **{k.arg: k.value for k in call.keywords}}
        bound = {}
        for name in params:
            value = passed.get(name)
            forwarded = isinstance(value, ast.Name) and value.id in own  # already counted as the caller's own
            bound[name] = 0.0 if forwarded else (_constant(module, value) if value is not None else None)
        return budget(callee, {k: v for k, v in bound.items() if v is not None}, stack, seen)
    name = _dotted(call.func)
    if name.rpartition(".")[2][:1].isupper():
        return 0.0  # a constructor's timeout configures (a client's per-request bound, a policy), it waits not
    seconds = sum(_constant(module, k.value) or 0.0 for k in call.keywords if k.arg in WAIT_PARAMS)
    if name.endswith(("sleep", "asyncio.timeout")) and call.args:
        seconds += _constant(module, call.args[0]) or 0.0
    if name.endswith("wait_for") and len(call.args) > 1:
        seconds += _constant(module, call.args[1]) or 0.0
    return seconds


# -- tests, fixtures, marks -------------------------------------------------------------------------------


def _fixture_name(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, bool] | None:
    """(name, autouse) when ``node`` is a fixture."""
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if _dotted(target).endswith("fixture"):
            keywords = {k.arg: k.value for k in decorator.keywords} if isinstance(decorator, ast.Call) else {}
            name = keywords.get("name")
            autouse = keywords.get("autouse")
            return (
                name.value if isinstance(name, ast.Constant) else node.name,
                isinstance(autouse, ast.Constant) and autouse.value is True,
            )
    return None


def _fixtures(module: Module) -> list[Func]:
    """Fixtures visible from ``module``, nearest first: the module, its conftests upwards, the k8s plugin."""
    scopes = [module]
    directory = module.path.parent
    while directory == TESTS or TESTS in directory.parents:
        conftest = MODULES.get(_module_name(directory / "conftest.py"))
        if conftest is not None and conftest is not module:
            scopes.append(conftest)
        directory = directory.parent
    scopes.append(MODULES["kray.dev.pytest_plugin"])
    return [(m, node, None) for m in scopes for node in m.functions.values() if _fixture_name(node)]


def _timeout_mark(decorators: list[ast.expr], module: Module) -> float | None:
    for decorator in decorators:
        items = decorator.elts if isinstance(decorator, ast.List | ast.Tuple) else [decorator]
        for item in items:
            if isinstance(item, ast.Call) and _dotted(item.func).endswith("mark.timeout") and item.args:
                return _constant(module, item.args[0])
    return None


def _module_mark(module: Module) -> float | None:
    for node in module.tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return _timeout_mark([node.value], module)
    return None


@dataclass(frozen=True)
class Budget:
    where: str
    waits: float
    timeout: float


def _test_functions(module: Module) -> Iterator[tuple[Func, list[ast.expr]]]:
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            yield (module, node, None), node.decorator_list
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for method in node.body:
                if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef) and method.name.startswith("test"):
                    yield (module, method, node.name), [*method.decorator_list, *node.decorator_list]


def _requested(node: ast.FunctionDef | ast.AsyncFunctionDef, decorators: list[ast.expr]) -> list[str]:
    names = [a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]]
    for decorator in decorators:
        if isinstance(decorator, ast.Call) and _dotted(decorator.func).endswith("mark.usefixtures"):
            names += [a.value for a in decorator.args if isinstance(a, ast.Constant)]
    return names


def collect_budgets() -> list[Budget]:
    found = []
    default = global_timeout()
    for module in MODULES.values():
        if not module.path.name.startswith("test_") or TESTS not in module.path.parents:
            continue
        fixtures = _fixtures(module)
        by_name: dict[str, Func] = {}
        for fixture in reversed(fixtures):  # nearest wins
            by_name[_fixture_name(fixture[1])[0]] = fixture  # type: ignore[index]
        autouse = [name for name, f in by_name.items() if _fixture_name(f[1])[1]]  # type: ignore[index]
        module_mark = _module_mark(module)
        for func, decorators in _test_functions(module):
            seen: set[str] = set()
            helpers: set[int] = set()
            pending = [*autouse, *_requested(func[1], decorators)]
            waits = budget(func, seen=helpers)
            while pending:
                name = pending.pop()
                if name in seen or name not in by_name:
                    continue
                seen.add(name)
                fixture = by_name[name]
                waits += budget(fixture, seen=helpers)
                pending += _requested(fixture[1], fixture[1].decorator_list)
            timeout = _timeout_mark(decorators, module) or module_mark or default
            where = f"{module.path.relative_to(ROOT)}::{func[2] + '::' if func[2] else ''}{func[1].name}"
            found.append(Budget(where, waits, timeout))
    return found


def test_every_tests_own_waits_fire_before_pytest_timeout_does() -> None:
    budgets = collect_budgets()
    assert len(budgets) > 100, "the rule found almost no tests: the analysis is broken"
    late = [b for b in budgets if b.waits + SLACK_SECONDS > b.timeout]
    assert not late, "tests whose bounded waits add up past their pytest timeout (raise it with " + (
        "@pytest.mark.timeout(...) or shorten the waits):\n"
        + "\n".join(f"  {b.where}: waits up to {b.waits:.0f}s + {SLACK_SECONDS:.0f}s slack > timeout {b.timeout:.0f}s"
                    for b in late)
    )  # fmt: skip


def test_the_rule_counts_waits_in_helpers_fixtures_and_loops() -> None:
    """The analysis itself: a known test's budget, computed by hand, is what the rule computes."""
    budgets = {b.where: b for b in collect_budgets()}
    assert budgets["tests/test_suite_rules.py::test_the_rule_counts_waits_in_helpers_fixtures_and_loops"].waits == 0
    sample = ast.parse(
        "import asyncio, time\n"
        "def helper(*, timeout=7): pass\n"
        "def test_x():\n"
        "    helper()\n"  # default 7
        "    helper(timeout=3)\n"  # 3
        "    for _ in range(4):\n"
        "        time.sleep(2)\n"  # 8
        "    deadline = time.monotonic() + 5\n"  # 5
        "    asyncio.wait_for(x, 1)\n"  # 1
    )
    module = Module("sample", TESTS / "sample.py", sample)
    for node in sample.body:
        if isinstance(node, ast.FunctionDef):
            module.functions[node.name] = node
    assert budget((module, module.functions["test_x"], None)) == 24


def test_no_test_skips_or_xfails() -> None:
    """A missing component fails, saying how to install it (``scripts/bootstrap``); it never skips."""
    offenders = [
        f"{module.path.relative_to(ROOT)}:{node.lineno}: {_dotted(node)}"
        for module in MODULES.values()
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Attribute)
        and _dotted(node).startswith("pytest.")
        and node.attr in {"skip", "skipif", "importorskip", "xfail"}
    ]
    assert not offenders, "\n".join(offenders)
