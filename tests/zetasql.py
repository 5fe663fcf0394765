"""ZetaSQL, the reference GoogleSQL analyzer (BigQuery's SQL front end), as a test fixture.

The npm package `@fivetrandevelopers/zetasql` ships ZetaSQL's `local_service` gRPC server
(`lib/zetasql/remote_server*`, one binary per platform) and its protos. It is looked up in `.zetasql/`
(git-ignored) and `npm install`ed there once when node/npm exist; without them the tests using the
fixture are skipped with the reason. One server per session on a free loopback port, killed at
teardown. Python speaks to it through `zetasql_bridge.js` (JSON lines over a pipe, relayed with the
package's own gRPC client libraries), so no generated protobuf code is needed here.

`Analyzer.check(sql, catalog, params)` parses `sql` as a script and resolves every statement in it
against the catalog: SQL statements are analyzed, a CREATE PROCEDURE is analyzed and its body walked
with the arguments in scope, the conditions and messages of IF / RAISE are analyzed as expressions. A
script construct it does not know is reported rather than skipped.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server_kit import free_port, npm_install, wait_port

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "@fivetrandevelopers/zetasql@1.13.0"
INSTALL_DIR = REPO / ".zetasql"
BRIDGE = Path(__file__).resolve().parent / "zetasql_bridge.js"
_LIB = Path("node_modules", "@fivetrandevelopers", "zetasql", "lib")

# BigQuery type names (schemas/*.json, query parameters) -> ZetaSQL TypeKind.
_TYPE_KINDS = {
    "STRING": "TYPE_STRING", "INT64": "TYPE_INT64", "FLOAT64": "TYPE_DOUBLE", "BOOL": "TYPE_BOOL",
    "DATE": "TYPE_DATE", "TIMESTAMP": "TYPE_TIMESTAMP", "DATETIME": "TYPE_DATETIME", "TIME": "TYPE_TIME",
    "NUMERIC": "TYPE_NUMERIC", "BIGNUMERIC": "TYPE_BIGNUMERIC", "JSON": "TYPE_JSON", "BYTES": "TYPE_BYTES",
}
# What the BigQuery backend sends: queries, DML, transactions, procedures and their calls.
STATEMENT_KINDS = [
    "RESOLVED_QUERY_STMT", "RESOLVED_INSERT_STMT", "RESOLVED_UPDATE_STMT", "RESOLVED_DELETE_STMT",
    "RESOLVED_MERGE_STMT", "RESOLVED_TRUNCATE_STMT", "RESOLVED_BEGIN_STMT", "RESOLVED_COMMIT_STMT",
    "RESOLVED_ROLLBACK_STMT", "RESOLVED_CREATE_PROCEDURE_STMT", "RESOLVED_CALL_STMT",
]


def type_proto(bq_type: str) -> dict:
    """A ZetaSQL TypeProto for a BigQuery type name such as NUMERIC or ARRAY<STRING>."""
    t = bq_type.strip().upper()
    if t.startswith("ARRAY<") and t.endswith(">"):
        return {"typeKind": "TYPE_ARRAY", "arrayType": {"elementType": type_proto(t[6:-1])}}
    return {"typeKind": _TYPE_KINDS[t]}


def find_zetasql(install: bool = True) -> tuple[Path | None, str]:
    """(the package's lib/ folder, '') or (None, reason)."""
    lib = INSTALL_DIR / _LIB
    if (lib / "zetasql" / "protos" / "local_service.proto").is_file():
        return lib, ""
    if not (shutil.which("node") and shutil.which("npm")):
        return None, f"ZetaSQL not available: {PACKAGE} is not installed in .zetasql/ and node/npm are missing"
    if not install:
        return None, f"ZetaSQL not installed: npm install --prefix .zetasql {PACKAGE} left no {_LIB}"
    failed = npm_install(INSTALL_DIR, PACKAGE, "ZetaSQL not available")
    return (None, failed) if failed else find_zetasql(install=False)


def server_binary(lib: Path) -> Path:
    """The package's server for this machine (the same choice as its own runServer)."""
    import platform

    arm = platform.machine().lower() in ("arm64", "aarch64")
    darwin = platform.system() == "Darwin"
    return lib / "zetasql" / f"remote_server{'_arm' if arm else ''}{'' if darwin else '.so'}"


class AnalyzerError(Exception):
    """ZetaSQL refused a request (the message is ZetaSQL's, e.g. a type error with its location)."""


@dataclass
class Finding:
    """One analyzed unit (a statement or a script expression) and ZetaSQL's error, if any."""

    kind: str  # the AST node analyzed, e.g. astInsertStatementNode, or 'expression' / 'script'
    text: str
    error: str | None = None


@dataclass
class Catalog:
    """Tables by dataset (columns as BigQuery type names) and procedures with their argument types."""

    project: str
    tables: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # dataset -> table -> col -> type
    procedures: dict[str, dict[str, list[tuple[str, str]]]] = field(default_factory=dict)  # dataset -> name -> args

    def add_table(self, dataset: str, table: str, columns: Iterable[tuple[str, str]]) -> None:
        self.tables.setdefault(dataset, {})[table] = dict(columns)

    def proto(self, constants: Mapping[str, str] | None = None, options: dict | None = None) -> dict:
        """A SimpleCatalogProto where `dataset.table` and `project.dataset.table` resolve both as one
        back-quoted name (how the code writes them) and as a path; `constants` are names in scope
        (a procedure's arguments)."""

        def table_proto(name: str, columns: dict[str, str]) -> dict:
            return {"name": name, "column": [{"name": c, "type": type_proto(t)} for c, t in columns.items()]}

        def procedure_proto(path: list[str], args: list[tuple[str, str]]) -> dict:
            return {"namePath": path, "signature": {
                "argument": [{"kind": "ARG_TYPE_FIXED", "type": type_proto(t), "numOccurrences": 1} for _, t in args],
                # a procedure returns nothing, but the server crashes serializing an ARG_TYPE_VOID
                "returnType": {"kind": "ARG_TYPE_FIXED", "type": type_proto("BOOL")}}}

        root_tables, datasets, procedures = [], [], []
        for ds, tables in sorted(self.tables.items()):
            for name, cols in sorted(tables.items()):
                root_tables += [table_proto(f"{ds}.{name}", cols), table_proto(f"{self.project}.{ds}.{name}", cols)]
            ds_procs = [procedure_proto([n], a) for n, a in sorted(self.procedures.get(ds, {}).items())]
            datasets.append({"name": ds, "table": [table_proto(n, c) for n, c in sorted(tables.items())],
                             "procedure": ds_procs})
        for ds, procs in sorted(self.procedures.items()):
            for name, args in sorted(procs.items()):
                procedures += [procedure_proto([f"{ds}.{name}"], args),
                               procedure_proto([f"{self.project}.{ds}.{name}"], args)]
        return {
            "name": "bigquery",
            "table": root_tables,
            "catalog": [*datasets, {"name": self.project, "catalog": datasets}],
            "procedure": procedures,
            "constant": [{"namePath": [n], "type": type_proto(t)} for n, t in (constants or {}).items()],
            "builtinFunctionOptions": {"languageOptions": (options or {}).get("languageOptions", {})},
        }


def _unwrap(node: dict) -> tuple[list[str], dict]:
    """An AST oneof wrapper ({"node": "astXNode", "astXNode": {...}}, nested) -> (kinds, the leaf message)."""
    kinds, inner = [], node
    while isinstance(inner, dict) and isinstance(inner.get("node"), str) and inner["node"] in inner:
        kinds.append(inner["node"])
        inner = inner[inner["node"]]
    return kinds, inner


def _text(node: dict, data: bytes) -> str:
    """The source text of an AST node (its byte range is up its chain of `parent` messages)."""
    while isinstance(node, dict):
        rng = node.get("parseLocationRange")
        if rng is not None:
            return data[int(rng.get("start", 0)):int(rng["end"])].decode()
        node = node.get("parent")
    raise ValueError("an AST node without a location")


# The expressions of script statements (analyzed as expressions); their other parts are walked.
_SCRIPT_EXPRESSIONS = {"astIfStatementNode": ("condition",), "astRaiseStatementNode": ("message",)}


class Analyzer:
    """One local_service server and one bridge process; `call` is one request, answered in order."""

    def __init__(self, lib: Path, timeout: float = 30):
        self.lib = lib
        self.port = free_port()
        # stderr to files, not pipes: nobody reads them while the processes run
        self._logs = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.server = subprocess.Popen([str(server_binary(lib)), "127.0.0.1", str(self.port)],
                                       stdout=subprocess.DEVNULL, stderr=self._logs[0], start_new_session=True)
        self.bridge = None
        self._next = 0
        self._catalogs: dict[str, str] = {}
        try:
            wait_port(self.port, self.server, "the ZetaSQL server", timeout, lambda: f": {_tail(self._logs[0])}")
            env = {**os.environ, "NODE_PATH": str(INSTALL_DIR / "node_modules")}
            self.bridge = subprocess.Popen(
                ["node", str(BRIDGE), str(lib / "zetasql" / "protos"), f"127.0.0.1:{self.port}"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._logs[1], text=True, env=env,
                start_new_session=True)
            self.options = self._options()
        except BaseException:
            self.close()
            raise

    def _options(self) -> dict:
        """Analyzer options close to BigQuery's: every released language feature, the external product
        mode (no INT32, UINT64, PROTO ...), the statement kinds the backend sends."""
        language = self.call("GetLanguageOptions", {"maximumFeatures": True})
        language.update(productMode="PRODUCT_EXTERNAL", supportedStatementKinds=STATEMENT_KINDS)
        return {"languageOptions": language, "errorMessageMode": "ERROR_MESSAGE_ONE_LINE",
                "parameterMode": "PARAMETER_NAMED",
                # BigQuery's scripting system variables the backend reads (documented types)
                "systemVariables": [{"namePath": ["error", "message"], "type": type_proto("STRING")},
                                    {"namePath": ["row_count"], "type": type_proto("INT64")}]}

    def call(self, method: str, request: dict) -> dict:
        if self.bridge is None or self.bridge.poll() is not None:
            raise RuntimeError("the ZetaSQL bridge is not running")
        self._next += 1
        self.bridge.stdin.write(json.dumps({"id": self._next, "method": method, "request": request}) + "\n")
        self.bridge.stdin.flush()
        line = self.bridge.stdout.readline()
        if not line:
            raise RuntimeError(f"the ZetaSQL bridge ended: {_tail(self._logs[1])}")
        answer = json.loads(line)
        assert answer["id"] == self._next, "answers come in request order"
        if "error" in answer:
            if self.server.poll() is not None:
                raise RuntimeError(f"the ZetaSQL server died (exit {self.server.returncode}) on {method}: "
                                   f"{_tail(self._logs[0])}")
            raise AnalyzerError(answer["error"].get("message") or f"gRPC status {answer['error'].get('code')}")
        return answer["response"]

    def register(self, catalog: Catalog, constants: Mapping[str, str] | None = None) -> str:
        """Register a catalog once (by content) and return its id."""
        proto = catalog.proto(constants, self.options)
        key = json.dumps(proto, sort_keys=True)
        if key not in self._catalogs:
            self._catalogs[key] = self.call("RegisterCatalog", {"simpleCatalog": proto})["registeredId"]
        return self._catalogs[key]

    def analyze(self, sql: str, catalog_id: str, params: Mapping[str, dict], *, expression: bool = False) -> dict:
        options = {**self.options, "queryParameters": [{"name": n, "type": t} for n, t in params.items()]}
        target = {"sqlExpression": sql} if expression else {"sqlStatement": sql}
        return self.call("Analyze", {"registeredCatalogId": catalog_id, "options": options, **target})

    def check(self, sql: str, catalog: Catalog, params: Mapping[str, dict] | None = None) -> list[Finding]:
        """Parse `sql` as a script and resolve each statement and script expression in it."""
        params = dict(params or {})
        try:
            parsed = self.call("Parse", {"sqlStatement": sql, "allowScript": True,
                                         "options": self.options["languageOptions"]})
        except AnalyzerError as e:
            return [Finding("script", sql, str(e))]
        found: list[Finding] = []
        self._walk(parsed["parsedScript"], sql.encode(), catalog, params, {}, found)
        if not found:
            found.append(Finding("script", sql, "no statement found in the text"))
        return found

    def _walk(self, node, data: bytes, catalog: Catalog, params: dict, constants: dict, found: list[Finding]):
        """Check what is under an AST node: SQL statements are analyzed, script statements have their
        expressions analyzed and their statement lists walked; anything else reached is reported."""
        if isinstance(node, list):
            for item in node:
                self._walk(item, data, catalog, params, constants, found)
            return
        if not isinstance(node, dict):
            return
        kinds, inner = _unwrap(node)

        def walk_parts(skip=(), scope=constants):
            for key, value in inner.items():
                if key != "parent" and key not in skip:
                    self._walk(value, data, catalog, params, scope, found)

        kind = kinds[-1] if kinds else ""
        if not kinds:  # a plain message: a script, a statement list, an exception handler
            walk_parts()
        elif kind == "astCreateProcedureStatementNode":
            self._analyze(_text(inner, data), kind, catalog, params, constants, found)
            entries = (inner.get("parameters") or {}).get("parameterEntries", [])
            args = {e["name"]["idString"]: _text(_unwrap(e["type"])[1], data) for e in entries}
            self._walk(inner.get("body"), data, catalog, params, {**constants, **args}, found)
        elif "astScriptStatementNode" in kinds:  # IF, RAISE, BEGIN ... EXCEPTION ... END
            expressions = _SCRIPT_EXPRESSIONS.get(kind, ())
            for key in expressions:
                if key in inner:
                    self._analyze(_text(_unwrap(inner[key])[1], data), f"{kind}.{key}", catalog, params,
                                  constants, found, expression=True)
            walk_parts(skip=expressions)
        elif kind.endswith("StatementNode"):
            self._analyze(_text(inner, data), kind, catalog, params, constants, found)
        else:
            found.append(Finding(kind, _text(inner, data), f"the test does not know how to check a {kind}"))

    def _analyze(self, text: str, kind: str, catalog: Catalog, params: dict, constants: dict,
                 found: list[Finding], expression: bool = False) -> None:
        catalog_id = self.register(catalog, constants)
        try:
            self.analyze(text, catalog_id, params, expression=expression)
            found.append(Finding(kind, text))
        except AnalyzerError as e:
            found.append(Finding(kind, text, str(e)))

    def close(self) -> None:
        if self.bridge is not None and self.bridge.poll() is None:
            self.bridge.stdin.close()
            try:
                self.bridge.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait()
        if self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        for log in self._logs:
            log.close()


def _tail(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-500:]


@pytest.fixture(scope="session")
def zetasql():
    """The Analyzer, started once per session (skipped with the reason where it cannot run)."""
    lib, reason = find_zetasql()
    if lib is None:
        pytest.skip(reason)
    try:
        analyzer = Analyzer(lib)
    except (OSError, RuntimeError, AnalyzerError) as e:
        pytest.skip(f"ZetaSQL did not start: {e}")
    try:
        yield analyzer
    finally:
        analyzer.close()
