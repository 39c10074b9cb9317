"""Cursors whose statements PostgreSQL prepares once per connection.

Django binds parameters on the client, so nothing it sends can be prepared, and planning a short
query can cost more than running it (BENCHMARKS.md, issue 5). The few fixed statements that hot
paths run go through this cursor instead: it binds on the server, and psycopg prepares a
statement after its first uses on a connection (``prepare_threshold`` in settings). It is still
Django's cursor wrapper: queries are logged and counted, errors translated.

Django internals relied on (``tests/core/test_internals.py`` fails by name if an upgrade changes
one): ``CursorDebugWrapper.debug_sql``, ``DatabaseWrapper.queries_logged`` and ``make_cursor``
(:func:`prepared_cursor`); ``Field.get_db_converters``, ``DatabaseOperations.get_db_converters``
and ``Field.get_col`` (:class:`Joined`); ``Model._state`` (``adding``, ``db``),
``Field.has_db_default``, ``DatabaseDefault`` and ``Field.generated`` (:func:`insert_rows`);
``Query.sql_with_params`` (:func:`condition_sql`); an ``IntegrityError`` whose ``__cause__`` is
psycopg's error (:func:`violated_constraint`).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

import psycopg
from django.core.exceptions import FieldDoesNotExist
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import BigIntegerField, Field, Model, Q
from django.db.models.expressions import DatabaseDefault, Expression


class _LoggedAsWritten(CursorDebugWrapper):
    """Django logs the text psycopg says it sent, and psycopg keeps none for a statement it has
    prepared (the query log showed None): log the statement as written, with its parameters."""

    @contextlib.contextmanager
    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        with super().debug_sql(sql, params, use_last_executed_query=False, many=many):
            yield


def database() -> Any:
    """This thread's connection itself. ``django.db.connection`` is a proxy that looks the
    connection up again on every attribute access, and the fields' conversions use it many times
    per value."""
    return connections[DEFAULT_DB_ALIAS]


_derived: list[Any] = []


def derived_from_models(function: Any) -> Any:
    """``functools.cache`` for what is built from the models' fields (statements, column lists):
    built once per process, as the models are, and forgotten by :func:`models_changed`."""
    cached = functools.cache(function)
    _derived.append(cached)
    return cached


def models_changed() -> None:
    """Forget everything built from the models' fields: what a restart after a migration does,
    for a test that adds a field to a model in its own process."""
    for cached in _derived:
        cached.cache_clear()


@contextlib.contextmanager
def prepared_cursor() -> Iterator[CursorWrapper]:
    db = database()
    db.ensure_connection()
    raw = psycopg.Cursor(db.connection)
    with contextlib.closing(raw):
        if db.queries_logged:
            yield _LoggedAsWritten(raw, db)
        else:
            yield db.make_cursor(raw)


_M = TypeVar("_M", bound=Model)


@dataclass(frozen=True)
class Joined(Generic[_M]):
    """One model's columns in a hand-written join, read back into an instance: what
    ``select_related`` does, for a statement written once instead of compiled per call."""

    model: type[_M]
    alias: str
    defer: tuple[str, ...] = ()

    @cached_property
    def fields(self) -> list[Field]:
        return [f for f in self.model._meta.concrete_fields if f.name not in self.defer]

    @cached_property
    def names(self) -> list[str]:
        return [field.attname for field in self.fields]

    @cached_property
    def converters(self) -> list[tuple[int, Any, list[Any]]]:
        # What the ORM's compiler applies to a row (JSON decoding, for one): (index, column,
        # converters) for each field that has any.
        found = []
        for index, field in enumerate(self.fields):
            column = field.get_col(self.alias)
            # Django's Field has get_db_converters; the stubs leave it out.
            own = field.get_db_converters(connection)  # type: ignore[attr-defined]
            functions = connection.ops.get_db_converters(column) + own
            if functions:
                found.append((index, column, functions))
        return found

    def build(self, values: Sequence[Any]) -> _M | None:
        if values[0] is None:
            return None
        values = list(values)
        db = database()
        for index, column, functions in self.converters:
            for function in functions:
                values[index] = function(values[index], column, db)
        return self.model.from_db(db.alias, self.names, values)

    @property
    def columns(self) -> str:
        return ", ".join(f'{self.alias}."{field.column}"' for field in self.fields)

    @property
    def table(self) -> str:
        return f'"{self.model._meta.db_table}" {self.alias}'


def fetch_joined(
    sql: str, params: Sequence[Any], parts: Sequence[Joined[Any]]
) -> list[Model | None]:
    """Run ``sql`` (its SELECT list: each part's ``columns`` in order) and build one instance per
    part from its single row; None for a part whose LEFT JOIN found nothing, and an empty list
    when there is no row."""
    row = fetch_row(sql, params)
    return [] if row is None else build_joined(row, parts)


def fetch_row(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def build_joined(row: Sequence[Any], parts: Sequence[Joined[Any]]) -> list[Model | None]:
    """One instance per part from a row of ``fetch_row``: new instances on every call."""
    instances: list[Model | None] = []
    start = 0
    for part in parts:
        instances.append(part.build(row[start : start + len(part.fields)]))
        start += len(part.fields)
    return instances


def model_field(model: type[Model], name: str) -> Field:
    """``model``'s field ``name`` that has a column: ``get_field`` also finds reverse relations
    and generic keys, which have none and which no statement here may name."""
    field = model._meta.get_field(name)
    if not isinstance(field, Field):
        raise FieldDoesNotExist(f"{model.__name__}.{name} is not a field with a column.")
    return field


def update_row(
    model: type[Model],
    pk: Any,
    changes: dict[str, Any],
    *,
    where: dict[str, Any] | None = None,
    inserting: Sequence[Model] = (),
) -> int:
    """``model.objects.filter(pk=pk, **where).update(**changes)`` as a prepared statement (the
    ORM compiles an UPDATE in about as long as PostgreSQL runs it): 1 when the row matched
    ``where`` and changed, else 0. Keys are field names; ``where`` values are compared with
    ``=``, so none may be None. No signals, as with ``QuerySet.update``.

    ``inserting``: rows of one model that the same statement inserts, as :func:`insert_rows`
    would (in a ``WITH``; they are inserted even if the row does not match, and get no primary
    key back): what an update writes beside the row, in one round trip instead of two."""
    where = where or {}
    if any(value is None for value in where.values()):
        raise ValueError("update_row compares with '=': a None in where never matches")

    db = database()

    def prepared(values: dict[str, Any]) -> list[Any]:
        return [
            model_field(model, name).get_db_prep_save(value, db) for name, value in values.items()
        ]

    params = [*prepared(changes), model._meta.pk.get_db_prep_save(pk, db), *prepared(where)]
    sql = update_statement(model, tuple(changes), tuple(where))
    if inserting:
        insert, document = insert_statement(type(inserting[0]), inserting)
        sql = f"WITH inserted AS ({insert}) {sql}"
        params.insert(0, document)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@derived_from_models
def update_statement(
    model: type[Model], changes: tuple[str, ...], where: tuple[str, ...] = ()
) -> str:
    """The UPDATE :func:`update_row` runs: ``changes`` (field names) set on the row whose
    primary key is the parameter after their values, where the fields ``where`` equal the
    parameters after it."""

    # Names come from the model, never from input; every value is a bound parameter.
    def column(name: str) -> str:
        return connection.ops.quote_name(model_field(model, name).column)

    assignments = ", ".join(f"{column(name)} = %s" for name in changes)
    conditions = "".join(f" AND {column(name)} = %s" for name in where)
    return (
        f"UPDATE {connection.ops.quote_name(model._meta.db_table)} SET {assignments}"  # noqa: S608
        f" WHERE {connection.ops.quote_name(model._meta.pk.column)} = %s{conditions}"
    )


def insert_rows(
    model: type[Model],
    rows: Sequence[Model],
    *,
    unless: tuple[str, Sequence[Any]] | None = None,
    skip_conflicts: bool = False,
) -> bool:
    """``model.objects.bulk_create(rows)`` as one prepared statement whatever the number of rows:
    the rows go as one JSON array that ``jsonb_populate_recordset`` reads into the table's row
    type (the ORM compiles a new statement per call, and binding each value on its own cost
    more than the insert). Each row gets its primary key, as with ``bulk_create`` on
    PostgreSQL; no signals are sent. For fields that JSON carries: text, numbers, booleans,
    JSON, arrays, timestamps, UUIDs, vectors.

    ``unless`` (a fixed ``SELECT`` and its parameters): nothing is inserted when it finds a row,
    in the same statement (a check and the write it guards, in one round trip; the check sees
    what committed before the statement began, as a statement of its own would).
    ``skip_conflicts`` (one row only): a row that a unique constraint refuses is not inserted,
    and the statement does not fail (``ON CONFLICT DO NOTHING``), so the transaction it is in
    goes on without a savepoint. False when nothing was inserted, True when the rows were."""
    if not rows:
        return True
    if skip_conflicts and len(rows) != 1:
        raise ValueError("skip_conflicts cannot tell which of several rows was refused")
    db = database()
    condition, condition_params = unless or ("", ())
    sql, document = insert_statement(model, rows, unless=condition, skip_conflicts=skip_conflicts)
    with prepared_cursor() as cursor:
        cursor.execute(sql, [document, *condition_params])
        keys = cursor.fetchall()
    if not keys:
        return False
    for row, (pk,) in zip(rows, keys, strict=True):
        row.pk = pk
        row._state.adding, row._state.db = False, db.alias
    return True


def insert_statement(
    model: type[Model], rows: Sequence[Model], *, unless: str = "", skip_conflicts: bool = False
) -> tuple[str, str]:
    """The INSERT of ``rows`` (of ``model``) that :func:`insert_rows` runs, and its one parameter,
    for a caller that puts it in a ``WITH`` of a statement of its own. Its columns are the
    model's: every concrete field but the primary key, and a ``db_default`` field that no row
    sets is left to the database."""
    fields = tuple(
        field
        for field in _insertable_fields(model)
        if not (
            field.has_db_default()
            and all(isinstance(getattr(row, field.attname), DatabaseDefault) for row in rows)
        )
    )
    sql = _insert_sql(model, tuple(field.column for field in fields), unless, skip_conflicts)
    return sql, _rows_document(rows, fields)


def _rows_document(rows: Sequence[Model], fields: Sequence[Field]) -> str:
    """The rows (of one model) as the JSON array that ``_insert_sql`` reads."""
    document = [{field.column: field.pre_save(row, add=True) for field in fields} for row in rows]
    if any(isinstance(value, DatabaseDefault) for row in document for value in row.values()):
        raise ValueError("rows that leave different database defaults to the database")
    return json.dumps(document, default=_json_value)


def _json_value(value: Any) -> Any:
    # Timestamps keep their microseconds (Django's JSON encoder cuts them to milliseconds);
    # vectors (numpy arrays) go as JSON arrays, which pgvector's input reads.
    if isinstance(value, datetime):
        return value.isoformat()
    return value.tolist() if hasattr(value, "tolist") else str(value)


@derived_from_models
def _insertable_fields(model: type[Model]) -> tuple[Field, ...]:
    return tuple(
        field
        for field in model._meta.concrete_fields
        if not field.primary_key and not getattr(field, "generated", False)
    )


@derived_from_models
def _insert_sql(
    model: type[Model], columns: tuple[str, ...], unless: str = "", skip_conflicts: bool = False
) -> str:
    # Names come from the model and conditions from the code, never from input; the rows are
    # one bound parameter.
    quoted = ", ".join(map(connection.ops.quote_name, columns))
    table = connection.ops.quote_name(model._meta.db_table)
    return (
        f"INSERT INTO {table} ({quoted}) SELECT {quoted}"  # noqa: S608
        f" FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb)"
        + (f" WHERE NOT EXISTS ({unless})" if unless else "")
        + (" ON CONFLICT DO NOTHING" if skip_conflicts else "")
        + f" RETURNING {connection.ops.quote_name(model._meta.pk.column)}"
    )


def violated_constraint(error: IntegrityError) -> str | None:
    """The name of the constraint that ``error`` reports (psycopg's diagnostics of the error it
    wraps), None when the database named none."""
    diagnostics = getattr(error.__cause__, "diag", None)
    return getattr(diagnostics, "constraint_name", None)


class Placeholder(Expression):
    """A named parameter (``%(name)s``) left in a condition the ORM compiles for a prepared
    statement (:func:`condition_sql`), bound by whoever runs the statement."""

    def __init__(self, name: str, output_field: Field | None = None) -> None:
        super().__init__(output_field=output_field or BigIntegerField())
        self.name = name

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return f"%({self.name})s", []


def condition_sql(model: type[Model], condition: Q) -> tuple[str, dict[str, Any]]:
    """``condition`` as the ORM compiles it for ``model.objects.filter(condition)``: the text
    after WHERE (the table named by its own name, so a statement selecting ``FROM`` it unaliased
    can use it) and its constants as named parameters ``condition_0``, ``condition_1``...
    (:class:`Placeholder` names the others). Written once, never restated by hand."""
    bare, _ = model._default_manager.values("pk").query.sql_with_params()
    sql, params = model._default_manager.filter(condition).values("pk").query.sql_with_params()
    start = f"{bare} WHERE "
    if not sql.startswith(start):
        raise RuntimeError(f"the ORM no longer compiles a filter as {start!r}...: {sql!r}")
    pieces = sql.removeprefix(start).split("%s")
    if len(pieces) != len(params) + 1:
        raise RuntimeError(f"cannot name the parameters of {sql!r}")
    names = [f"condition_{index}" for index in range(len(params))]
    text = pieces[0] + "".join(
        f"%({name})s{piece}" for name, piece in zip(names, pieces[1:], strict=True)
    )
    return text, dict(zip(names, params, strict=True))
