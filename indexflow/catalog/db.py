"""The sqlite index.db: schema (opm migration 13), opening with opm's pragmas, upgrades, listing.

Every connection runs with foreign keys ON because opm's semantics live in the cascades (a bundle
delete drops the channels it heads, and with the default channel the package). Older databases
are upgraded on a copy only: opm upgrades in place, which silently rewrites a user's input.

An index.db comes from someone else (an artifact, a user's file), so it is opened as untrusted
(`check_index_db`): read-only, a schema check before any other query (opm's tables are tables, no
views, no triggers but opm's two, a schema version this engine knows, every column holding the
type opm writes), and every connection has a query deadline (`INDEXFLOW_DB_QUERY_SECONDS`) enforced
by sqlite's progress handler. A bad db is one sentence naming it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import urllib.parse
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from indexflow.catalog.limits import query_seconds
from indexflow.errors import CatalogError

if TYPE_CHECKING:  # SQLAlchemy costs ~0.3 s to import: only open_db() needs it, so the CLI verbs skip it
    from sqlalchemy import Engine

SCHEMA_VERSION = 13
OLDEST_UPGRADABLE = 5

_BUNDLE_FK = ("FOREIGN KEY(operatorbundle_name, operatorbundle_version, operatorbundle_path) "
              "REFERENCES operatorbundle(name, version, bundlepath) ON DELETE CASCADE")
_API_COLS = ("group_name TEXT, version TEXT, kind TEXT, operatorbundle_name TEXT, "
             "operatorbundle_version TEXT, operatorbundle_path TEXT")
_API_LINK = (f"CREATE TABLE IF NOT EXISTS \"{{t}}\" ({_API_COLS}, {_BUNDLE_FK} DEFERRABLE INITIALLY DEFERRED, "
             "FOREIGN KEY(group_name, version, kind) REFERENCES api(group_name, version, kind) ON DELETE CASCADE)")
_CLEANUP = """CREATE TRIGGER {t}_cleanup AFTER DELETE ON {t}
WHEN NOT EXISTS (SELECT 1 FROM api_provider JOIN api_requirer WHERE
    (api_provider.group_name = OLD.group_name AND api_provider.version = OLD.version AND api_provider.kind = OLD.kind) OR
    (api_requirer.group_name = OLD.group_name AND api_requirer.version = OLD.version AND api_requirer.kind = OLD.kind))
BEGIN
    DELETE FROM api WHERE group_name = OLD.group_name AND version = OLD.version AND kind = OLD.kind;
END"""
TRIGGERS = {t: _CLEANUP.format(t=t) for t in ("api_provider", "api_requirer")}

SCHEMA = [
    "CREATE TABLE schema_migrations (version bigint NOT NULL, timestamp DATETIME DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE api (group_name TEXT, version TEXT, kind TEXT, plural TEXT NOT NULL, "
    "PRIMARY KEY(group_name, version, kind))",
    "CREATE TABLE operatorbundle (name TEXT PRIMARY KEY, csv TEXT, bundle TEXT, bundlepath TEXT, "
    "skiprange TEXT, version TEXT, replaces TEXT, skips TEXT, substitutesfor TEXT)",
    "CREATE TABLE package (name TEXT PRIMARY KEY, default_channel TEXT, "
    "FOREIGN KEY(name, default_channel) REFERENCES channel(package_name,name) ON DELETE CASCADE)",
    "CREATE TABLE channel (name TEXT, package_name TEXT, head_operatorbundle_name TEXT, "
    "PRIMARY KEY(name, package_name), "
    "FOREIGN KEY(head_operatorbundle_name) REFERENCES operatorbundle(name) ON DELETE CASCADE)",
    "CREATE TABLE channel_entry (entry_id INTEGER PRIMARY KEY, channel_name TEXT, package_name TEXT, "
    "operatorbundle_name TEXT, replaces INTEGER, depth INTEGER, "
    "FOREIGN KEY(replaces) REFERENCES channel_entry(entry_id) DEFERRABLE INITIALLY DEFERRED, "
    "FOREIGN KEY(channel_name, package_name) REFERENCES channel(name, package_name) ON DELETE CASCADE)",
    "CREATE TABLE related_image (image TEXT, operatorbundle_name TEXT, "
    "FOREIGN KEY(operatorbundle_name) REFERENCES operatorbundle(name) ON DELETE CASCADE)",
    _API_LINK.format(t="api_provider"),
    _API_LINK.format(t="api_requirer"),
    "CREATE UNIQUE INDEX pk ON operatorbundle(name, version, bundlepath)",
    TRIGGERS["api_provider"],
    TRIGGERS["api_requirer"],
    "CREATE TABLE dependencies (type TEXT, value TEXT, operatorbundle_name TEXT, "
    f"operatorbundle_version TEXT, operatorbundle_path TEXT, {_BUNDLE_FK})",
    "CREATE TABLE properties (type TEXT, value TEXT, operatorbundle_name TEXT, "
    f"operatorbundle_version TEXT, operatorbundle_path TEXT, {_BUNDLE_FK})",
    "CREATE TABLE deprecated (operatorbundle_name TEXT PRIMARY KEY)",
]


@dataclass(frozen=True)
class BundleRecord:
    """One bundle as `opm render <db>` lists it (field names follow opm's JSON)."""

    packageName: str
    csvName: str
    version: str
    bundlePath: str


def _deadline(con: sqlite3.Connection) -> None:
    """Interrupt any statement once the connection has lived `INDEXFLOW_DB_QUERY_SECONDS`."""
    end = time.monotonic() + query_seconds()
    con.set_progress_handler(lambda: int(time.monotonic() > end), 10_000)


def connect(path: Path | str) -> sqlite3.Connection:
    """Raw connection in autocommit mode (transactions are explicit) with foreign keys on."""
    con = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    _deadline(con)
    con.execute("PRAGMA foreign_keys = ON")
    return con


def connect_ro(path: Path | str) -> sqlite3.Connection:
    """Read-only connection with the query deadline (the path is URI-quoted: `?`/`#` are data)."""
    con = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?mode=ro", uri=True, check_same_thread=False)
    _deadline(con)
    return con


def db_error(path: Path | str, exc: sqlite3.Error) -> CatalogError:
    """A sqlite error as one sentence naming the db (an interrupted query says why)."""
    if isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc):
        return CatalogError(f"database {path}: a query ran past the deadline of INDEXFLOW_DB_QUERY_SECONDS; "
                            "the file is not a usable index.db")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return CatalogError(f"{path} is not an index.db ({exc})")
    return CatalogError(f"database {path}: {exc}")


@contextmanager
def write_transaction(path: Path | str) -> Iterator[sqlite3.Connection]:
    """One IMMEDIATE transaction: committed on success, rolled back on any error.

    sqlite errors (locked, corrupt file, ...) become a CatalogError naming the db.
    """
    con = connect(path)
    try:
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise db_error(path, exc) from None
    finally:
        con.close()


def create_db(path: Path | str) -> None:
    """Write a new, empty index.db at the current schema (refuses to overwrite a file)."""
    path = Path(path)
    if path.exists():
        raise CatalogError(f"cannot create database {path}: file exists")
    con = connect(path)
    try:
        con.execute("BEGIN")
        for ddl in SCHEMA:
            con.execute(ddl)
        con.execute("INSERT INTO schema_migrations(version) VALUES (?)", (SCHEMA_VERSION,))
        con.execute("COMMIT")
    finally:
        con.close()


def schema_version(path: Path | str) -> int:
    """opm's notion, max(schema_migrations.version), of a db that passed `check_index_db`."""
    return check_index_db(path)


_TABLES = ("schema_migrations", "api", "operatorbundle", "package", "channel", "channel_entry", "related_image",
           "api_provider", "api_requirer", "dependencies", "properties", "deprecated")
_BYTES_OK = {("operatorbundle", "csv"), ("operatorbundle", "bundle"), ("dependencies", "value")}  # Go []byte
_ANY_OK = {("schema_migrations", "timestamp")}
_STORAGE_CLASSES = ("blob", "integer", "real", "text")  # and 'null', allowed everywhere


def _sql_words(sql: str | None) -> str:
    return " ".join((sql or "").split()).replace("( ", "(").replace(" )", ")")


_CHECKED: dict[tuple, int] = {}  # file identity -> schema version, for files that passed the check


def file_identity(path: Path) -> tuple:
    """What changes whenever the file's content can have changed: inode, size, times, the sqlite
    header (its change counter moves on every commit, even within one clock tick) and the stat of a
    WAL file beside it, whose pages a reader sees too."""
    def stat(p: Path) -> tuple | None:
        try:
            st = p.stat()
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except OSError:
        header = b""
    return os.path.realpath(path), stat(path), header, stat(path.with_name(path.name + "-wal"))


def check_index_db(path: Path | str) -> int:
    """Refuse, in one sentence, a file that is not an index.db this engine can read safely; returns
    its schema version (5..13). Runs before any other query on the file.

    The full check scans every row (tens of MB on a real catalog) and a merge reads the same db several
    times, so a file that passed is not scanned again in this process until it changes."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"database {path} does not exist")
    key = file_identity(path)
    if key in _CHECKED:
        return _CHECKED[key]
    version = _check_index_db(path)
    if file_identity(path) == key:  # unchanged while it was checked
        _CHECKED[key] = version
    return version


def vouch(path: Path | str, copy_of: Path | str | None = None) -> None:
    """Spare the full scan of a db this process can vouch for: one this engine has just written (or a
    byte copy of its output kept by the step cache, which lives in the same trusted cache dir), or, with
    `copy_of`, a byte copy of a file that passed the check. A warm merge reads four such ~60 MB dbs;
    their schema and version are still read (cheap); `copy_of` that never passed vouches for nothing."""
    path = Path(path)
    if copy_of is not None and file_identity(Path(copy_of)) not in _CHECKED:
        return
    key = file_identity(path)
    version = _check_index_db(path, scan_columns=False)
    if file_identity(path) == key:
        _CHECKED[key] = version


def _check_index_db(path: Path, scan_columns: bool = True) -> int:
    with open(path, "rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            raise CatalogError(f"{path} is not an index.db (not an sqlite database)")
    con = connect_ro(path)
    try:
        _check_schema(con, path)
        version = _version(con, path)
        if scan_columns:  # the full scan: only `vouch`, for a db this process wrote or copied, skips it
            _check_column_types(con, path)
        return version
    except sqlite3.Error as exc:
        raise db_error(path, exc) from None
    finally:
        con.close()


def _check_schema(con: sqlite3.Connection, path: Path) -> None:
    objects = con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    ours = {_sql_words(sql) for sql in TRIGGERS.values()}
    for kind, name, _, sql in objects:
        if kind == "view":
            raise CatalogError(f"{path} is not an index.db: it defines a view ({name!r}); opm's schema has none")
        if kind == "trigger" and _sql_words(sql) not in ours:
            raise CatalogError(f"{path} is not an index.db: trigger {name!r} is not one of opm's")
        if kind != "table" and name in _TABLES:
            raise CatalogError(f"{path} is not an index.db: {name} is a {kind}, not a table")
    if "operatorbundle" not in {n for k, n, _, _ in objects if k == "table"}:
        raise CatalogError(f"{path} is not an index.db: it has no operatorbundle table")


def _version(con: sqlite3.Connection, path: Path) -> int:
    try:
        row = con.execute("SELECT max(version), typeof(max(version)) FROM schema_migrations").fetchone()
    except sqlite3.OperationalError:
        row = None
    version = row[0] if row and row[1] == "integer" else -1
    if not OLDEST_UPGRADABLE <= version <= SCHEMA_VERSION:
        shown = version if version != -1 else "unknown"
        raise CatalogError(f"database {path} has schema version {shown}; only versions "
                           f"{OLDEST_UPGRADABLE}..{SCHEMA_VERSION} can be opened")
    return version


def _check_column_types(con: sqlite3.Connection, path: Path) -> None:
    """Every column holds what opm writes there: integers in INTEGER columns, text elsewhere
    (bytes only where opm stores Go []byte), so no reader meets a BLOB where it expects a name."""
    present = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in (t for t in _TABLES if t in present):
        checks = []
        for _, col, decl, *_ in con.execute(f'PRAGMA table_info("{table}")'):
            if (table, col) in _ANY_OK:
                continue
            allowed = ("integer",) if "INT" in (decl or "").upper() else \
                ("text", "blob") if (table, col) in _BYTES_OK else ("text",)
            checks.append((col, allowed))
        if not checks:
            continue
        # typeof() names one of five storage classes: asking for the others is the same check, and
        # `IN` costs a third less per row than `NOT IN` (every row of every table is scanned)
        where = " OR ".join(f'typeof("{c}") IN ({_others(allowed)})' for c, allowed in checks)
        cols = ", ".join(f'typeof("{c}")' for c, _ in checks)
        bad = con.execute(f'SELECT {cols} FROM "{table}" WHERE {where} LIMIT 1').fetchone()
        if bad is not None:
            col, kind = next((c, k) for (c, allowed), k in zip(checks, bad) if k not in ("null", *allowed))
            raise CatalogError(f"{path} is not an index.db: {table}.{col} holds a {kind} value")


def _others(allowed: tuple[str, ...]) -> str:
    """The SQL list of the storage classes (null aside) not in `allowed`."""
    return ", ".join(f"'{kind}'" for kind in _STORAGE_CLASSES if kind not in allowed)


def require_current(path: Path | str) -> None:
    """Writers refuse old schemas instead of upgrading the user's file in place."""
    version = schema_version(path)
    if version != SCHEMA_VERSION:
        raise CatalogError(
            f"database {path} has schema version {version}, expected {SCHEMA_VERSION}; "
            f"upgrade a copy first (indexflow.catalog.db.upgrade_copy)")


def open_db(path: Path | str) -> Engine:
    """SQLAlchemy engine on a current-schema db (FKs on, explicit transactions).

    An older db is upgraded in a temporary copy and the engine points at that copy, so the
    caller's file is never changed silently.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    path = Path(path)
    if schema_version(path) != SCHEMA_VERSION:
        from indexflow import workdirs

        tmp = workdirs.make("db") / path.name  # lives as long as the engine; swept once this process is gone
        path = upgrade_copy(path, tmp)
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_con, _record):  # noqa: ANN001 - SQLAlchemy hook signature
        dbapi_con.isolation_level = None
        dbapi_con.execute("PRAGMA foreign_keys = ON")

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN")

    return engine


def upgrade_copy(src: Path | str, dest: Path | str) -> Path:
    """Copy `src` to `dest` and bring the copy to schema 13 (opm's migrations 6..13)."""
    src, dest = Path(src), Path(dest)
    version = schema_version(src)
    if version < OLDEST_UPGRADABLE:
        raise CatalogError(f"database {src} has schema version {version}; "
                           f"only versions {OLDEST_UPGRADABLE}..{SCHEMA_VERSION} can be opened")
    shutil.copyfile(src, dest)
    if version < SCHEMA_VERSION:
        from indexflow.catalog.upgrade import upgrade

        con = connect(dest)
        try:
            upgrade(con, version)
        finally:
            con.close()
    return dest


_LIST_SQL = """
SELECT DISTINCT ce.package_name, ob.name, ob.version, ob.bundlepath
FROM channel_entry ce JOIN operatorbundle ob ON ob.name = ce.operatorbundle_name
WHERE ob.version IS NOT NULL AND ob.bundlepath IS NOT NULL AND ce.channel_name IS NOT NULL
  AND ob.name {} (SELECT operatorbundle_name FROM properties WHERE type = 'olm.deprecated')
ORDER BY ce.package_name, ob.name
"""


def list_bundles(path: Path | str, deprecated: bool = False) -> list[BundleRecord]:
    """Bundles as `opm render <db>` shows them: in a channel, not deprecated; sorted by package, name.

    With `deprecated`, the opposite: the deprecated bundles left in the db as the tails of truncated
    channels (render omits them, but a bundle that replaces one needs it present)."""
    with readable(path, "list") as con:
        rows = con.execute(_LIST_SQL.format('IN' if deprecated else 'NOT IN')).fetchall()
    return [BundleRecord(p, n, v or "", b or "") for p, n, v, b in rows]


@contextmanager
def readable(path: Path | str, purpose: str) -> Iterator[sqlite3.Connection]:
    """A read-only connection for reading a db of any schema opm can open, as at schema 13.

    An older db is read from an upgraded copy in a scratch dir for `purpose` (made only then: a
    current db, the usual case, needs none). A sqlite error in the block becomes one sentence
    naming the caller's db, not the copy."""
    with ExitStack() as stack:
        read = Path(path)
        if schema_version(read) != SCHEMA_VERSION:  # (workdirs, socket and tempfile imported only then)
            from indexflow import workdirs

            read = upgrade_copy(read, Path(stack.enter_context(workdirs.scratch(purpose))) / "index.db")
        con = connect_ro(read)
        try:
            yield con
        except sqlite3.Error as exc:
            raise db_error(path, exc) from None
        finally:
            con.close()
