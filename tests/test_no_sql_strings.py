"""No SQL is built from strings: every statement is SQLAlchemy Core or a literal with bound
parameters (issue: security).

An AST scan of core/, alerts/ and bot/ finds every call that takes SQL text (SQLAlchemy
``text()``/``literal_column()``, ``exec_driver_sql``, and ``execute``/``executemany``/``fetch``/
``fetchrow``/``fetchval``/``prepare``/``cursor`` as asyncpg, aiosqlite and sqlite3 name them) and
fails on one whose SQL argument is built at run time: an f-string, a ``%`` format, a
``.format()`` call, a ``.join()``, or a concatenation, directly or through a variable assigned
in the same function or module. Interpolating a literal constant is fine (``f"PRAGMA
busy_timeout = {TIMEOUT_MS:d}"`` with ``TIMEOUT_MS = 30_000`` at module level): it is fixed
text, not input. The scanner is tested on snippets first, so a scan that finds nothing means
something.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "alerts", "bot")

# Methods whose first argument is SQL text (SQLAlchemy connections, asyncpg, aiosqlite, sqlite3).
SQL_METHODS = frozenset(
    ("execute", "executemany", "exec_driver_sql", "fetch", "fetchrow", "fetchval", "prepare",
     "cursor", "executescript")
)  # fmt: skip
# SQLAlchemy functions that wrap raw SQL text.
SQL_FUNCTIONS = frozenset(("text", "literal_column"))
SQL_KEYWORDS = ("query", "statement", "sql", "text")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    call: str
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.call}(...) gets SQL built from {self.why}"


def _assignments(body: list[ast.stmt], *, nested: bool) -> dict[str, list[ast.expr]]:
    """Name -> the values assigned to it: in a function body (``nested``: its inner blocks
    too), or at module level."""
    found: dict[str, list[ast.expr]] = {}
    nodes = (n for stmt in body for n in ast.walk(stmt)) if nested else iter(body)
    for node in nodes:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None:
            targets, value = [node.target], node.value
            if isinstance(node, ast.AugAssign):  # sql += ...: built
                value = ast.BinOp(left=node.target, op=node.op, right=node.value)
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                found.setdefault(target.id, []).append(value)
    return found


Scope = dict[str, list[ast.expr]]
Func = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class _Sink:
    """Where a callee takes its SQL: a positional index and a keyword name."""

    index: int
    keywords: tuple[str, ...]


def _positional(func: Func) -> list[str]:
    names = [a.arg for a in (*func.args.posonlyargs, *func.args.args)]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


class _Scanner:
    """Finds SQL calls in one module and says whether their SQL is built from strings.

    A function that passes one of its parameters on as SQL (``def _query(self, sql, *args):
    return await conn.fetchval(sql, *args)``) is a SQL call too: its callers are checked.
    """

    def __init__(self, tree: ast.Module, path: str) -> None:
        self.path = path
        self.module = _assignments(tree.body, nested=False)
        self.sql_functions: set[str] = set()  # local names of sqlalchemy.text & co
        self.sqlalchemy_modules: set[str] = set()  # local names of the sqlalchemy package
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
                for alias in node.names:
                    if alias.name in SQL_FUNCTIONS:
                        self.sql_functions.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "sqlalchemy" or alias.name.startswith("sqlalchemy."):
                        self.sqlalchemy_modules.add((alias.asname or alias.name).split(".")[0])
        self.wrappers: dict[str, _Sink] = {}
        self._all: list[tuple[ast.Call, Scope, Func | None]] = []
        self._visit(tree, {}, None)
        while self._find_wrappers():  # wrappers of wrappers, until nothing new
            pass
        self.calls = [
            (call, name, local)
            for call, local, _ in self._all
            if (name := self._callee(call)) is not None
        ]

    def _visit(self, node: ast.AST, local: Scope, func: Func | None) -> None:
        """Every call with the assignments in scope (a function sees its own, shadowing those
        of the functions around it, and the module's) and the function it is in."""
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                self._visit(child, {**local, **_assignments(child.body, nested=True)}, child)
                continue
            if isinstance(child, ast.Call):
                self._all.append((child, local, func))
            self._visit(child, local, func)

    def _callee(self, call: ast.Call) -> str | None:
        """The name of the SQL call ``call`` is, or None."""
        f = call.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        if name in self.wrappers:
            return name
        if isinstance(f, ast.Name) and f.id in self.sql_functions:
            return f.id
        if isinstance(f, ast.Attribute):
            if f.attr in SQL_METHODS:
                return f.attr
            base = f.value
            if (
                f.attr in SQL_FUNCTIONS
                and isinstance(base, ast.Name)
                and base.id in self.sqlalchemy_modules
            ):
                return f.attr
        return None

    def _sql_arg(self, call: ast.Call, name: str) -> ast.expr | None:
        sink = self.wrappers.get(name, _Sink(0, SQL_KEYWORDS))
        if len(call.args) > sink.index and not isinstance(call.args[sink.index], ast.Starred):
            return call.args[sink.index]
        return next((kw.value for kw in call.keywords if kw.arg in sink.keywords), None)

    def _find_wrappers(self) -> bool:
        found = False
        for call, local, func in self._all:
            name = self._callee(call)
            sql = None if name is None else self._sql_arg(call, name)
            if func is None or not isinstance(sql, ast.Name) or sql.id in local:
                continue
            params = _positional(func)
            if sql.id in params and func.name not in self.wrappers:
                self.wrappers[func.name] = _Sink(params.index(sql.id), (sql.id,))
                found = True
        return found

    def findings(self) -> Iterator[Finding]:
        for call, name, local in self.calls:
            sql = self._sql_arg(call, name)
            if sql is None:
                continue
            why = self._built(sql, local, set())
            if why is not None:
                yield Finding(self.path, call.lineno, name, why)

    def _constant(self, node: ast.expr, local: Scope, seen: set[str]) -> bool:
        """A literal, or a name bound only to literals: fixed text, whatever it is joined to."""
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Name):
            values = local.get(node.id) or self.module.get(node.id)
            if not values or node.id in seen:
                return False
            return all(self._constant(v, local, seen | {node.id}) for v in values)
        if isinstance(node, ast.BinOp):
            return self._constant(node.left, local, seen) and self._constant(
                node.right, local, seen
            )
        if isinstance(node, ast.JoinedStr):
            return all(
                self._constant(v.value if isinstance(v, ast.FormattedValue) else v, local, seen)
                for v in node.values
            )
        if isinstance(node, ast.IfExp):
            return self._constant(node.body, local, seen) and self._constant(
                node.orelse, local, seen
            )
        return False

    def _built(self, node: ast.expr, local: Scope, seen: set[str]) -> str | None:
        """Why ``node`` is SQL built at run time, or None when it is not."""
        if self._constant(node, local, seen):
            return None
        if isinstance(node, ast.IfExp):
            return self._built(node.body, local, seen) or self._built(node.orelse, local, seen)
        if isinstance(node, ast.JoinedStr):
            return "an f-string"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return "a %-format"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return "a concatenation"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("format", "format_map", "join", "replace")
        ):
            return f"str.{node.func.attr}()"
        if isinstance(node, ast.Name) and node.id not in seen:
            for value in local.get(node.id) or self.module.get(node.id) or ():
                why = self._built(value, local, seen | {node.id})
                if why is not None:
                    return f"{why} (via {node.id})"
        return None


def scan_source(source: str, path: str = "<snippet>") -> tuple[int, list[Finding]]:
    """(SQL calls seen, findings) for one module's source."""
    scanner = _Scanner(ast.parse(source), path)
    return len(scanner.calls), list(scanner.findings())


def scan_packages() -> tuple[int, int, list[Finding]]:
    """(files, SQL calls seen, findings) over core/, alerts/ and bot/."""
    files = calls = 0
    findings: list[Finding] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            files += 1
            n, found = scan_source(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
            calls += n
            findings += found
    return files, calls, findings


# --- the scanner on snippets ------------------------------------------------------------------

BUILT = [
    (
        "from sqlalchemy import text\n"
        "async def f(conn, sym):\n"
        "    await conn.execute(text(f\"SELECT * FROM subs WHERE symbol = '{sym}'\"))\n",
        "an f-string",
    ),
    (
        "async def f(conn, name):\n    return await conn.fetch('SELECT %s' % name)\n",
        "a %-format",
    ),
    (
        'def f(conn, a):\n    conn.exec_driver_sql("DELETE FROM t WHERE a = \'" + a + "\'")\n',
        "a concatenation",
    ),
    (
        "async def f(conn, x):\n"
        "    sql = 'SELECT {} FROM t'.format(x)\n"
        "    return await conn.fetchrow(sql)\n",
        "str.format() (via sql)",
    ),
    (
        "import sqlalchemy as sa\ndef f(col):\n    return sa.text(f'{col} IS NULL')\n",
        "an f-string",
    ),
    (
        "async def f(conn, ids):\n"
        "    await conn.fetchval(query='SELECT 1 WHERE id IN (' + ','.join(ids) + ')')\n",
        "a concatenation",
    ),
    (
        "class Repo:\n"
        "    async def f(self, conn, t):\n"
        "        sql = 'SELECT * FROM '\n"
        "        sql += t\n"
        "        await conn.execute(sql)\n",
        "a concatenation (via sql)",
    ),
    (
        "class Lease:\n"
        "    async def _query(self, sql, *args):\n"
        "        return await self._conn.fetchval(sql, *args)\n"
        "    async def check(self, key):\n"
        "        return await self._query(f'SELECT pg_try_advisory_lock({key})')\n",
        "an f-string",
    ),
    (
        "async def f(conn, t, fast):\n"
        "    await conn.execute('SELECT 1' if fast else f'SELECT * FROM {t}')\n",
        "an f-string",
    ),
]


@pytest.mark.parametrize(("source", "why"), BUILT)
def test_the_scanner_flags_sql_built_from_strings(source: str, why: str) -> None:
    calls, findings = scan_source(source)
    assert calls >= 1  # execute(text(...)) is two calls; the text() call is the one flagged
    assert [f.why for f in findings] == [why], findings


BOUND = [
    "from sqlalchemy import text\n"
    "def f(conn, k):\n    conn.execute(text('SELECT pg_advisory_xact_lock(:key)'), {'key': k})\n",
    "async def f(conn, x):\n    return await conn.fetchval('SELECT pg_try_advisory_lock($1)', x)\n",
    "TIMEOUT_MS = 30_000\n"
    "def f(cursor):\n    cursor.execute(f'PRAGMA busy_timeout = {TIMEOUT_MS:d}')\n",
    "_SQL = '''\nSELECT 1\n  FROM t\n'''\n"
    "async def f(conn, a):\n    await conn.fetchrow(_SQL, a)\n",
    "def f(conn, stmt):\n    return conn.execute(stmt.where(stmt.c.id == 1))\n",
    "def f(conn, immediate):\n"
    "    conn.exec_driver_sql('BEGIN IMMEDIATE' if immediate else 'BEGIN')\n",
    "def outer(conn):\n    sql = 'SELECT 1'\n    def inner():\n        return conn.execute(sql)\n",
]


@pytest.mark.parametrize("source", BOUND)
def test_the_scanner_passes_literals_and_bound_parameters(source: str) -> None:
    calls, findings = scan_source(source)
    assert calls >= 1 and findings == []


def test_no_sql_is_built_from_strings() -> None:
    files, calls, findings = scan_packages()
    assert files > 50 and calls >= 30  # the scan sees the store's and leadership's SQL calls
    assert findings == [], "\n".join(str(f) for f in findings)
