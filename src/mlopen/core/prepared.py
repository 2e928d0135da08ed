"""Queries on every run's path, compiled to SQL once per process and run again with new values.

Building and compiling a queryset costs Python 0.3-3 ms each time (filters resolved, joins set up,
expressions compiled), several times what the database then takes to answer it: a worker's claim
made seven such queries per run. A :class:`Prepared` query is a queryset compiled once with
*stand-in* values in the places that change, and then executed with the real values bound in those
places: the SQL the ORM wrote, without the ORM's cost per call.

Django has no prepared-statement API of its own and no well-kept library offers one, hence this
small helper. It keeps to what the ORM compiles to: stand-ins must be plain values the ORM passes
through unchanged as parameters (strings and integers), each distinct from every other parameter of
the query, which :func:`prepare` checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable, get_related_populators


@dataclass(frozen=True)
class Prepared:
    sql: str
    params: tuple
    slots: dict[int, str]  # parameter position -> the name of the value that goes there

    def bind(self, **values) -> list:
        """The query's parameters with ``values`` in the stand-ins' places."""
        bound = list(self.params)
        for position, name in self.slots.items():
            bound[position] = values[name]
        return bound

    def rows(self, **values) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self.bind(**values))
            return cursor.fetchall()

    def first_value(self, **values):
        """The first column of the first row, or None when there is none."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self.bind(**values))
            row = cursor.fetchone()
        return None if row is None else row[0]


def prepare(build: Callable[..., QuerySet], **stand_ins) -> Prepared:
    """Compile ``build(**stand_ins)`` (a queryset) and note where each stand-in's value went."""
    sql, params = build(**stand_ins).query.sql_with_params()
    return Prepared(sql, tuple(params), _slots(params, stand_ins))


def _slots(params, stand_ins: dict) -> dict[int, str]:
    slots: dict[int, str] = {}
    for name, stand_in in stand_ins.items():
        places = [i for i, param in enumerate(params) if type(param) is type(stand_in) and param == stand_in]
        if not places:
            raise ValueError(f"the stand-in for {name!r} is not a parameter of the compiled query")
        slots.update(dict.fromkeys(places, name))
    return slots


@dataclass(frozen=True)
class _ModelsStatement:
    """What turning a compiled queryset's rows into model instances needs, worked out once."""

    prepared: Prepared
    model: type[Model]
    fields_start: int
    fields_end: int
    attnames: tuple[str, ...]
    related_populators: tuple
    converters: tuple  # (position, (converter functions, expression)) for the columns that have any


class _CompiledOnce:
    """``build(**stand_ins)`` compiled on first use for each database, the database being known only then."""

    def __init__(self, build: Callable[..., QuerySet], **stand_ins) -> None:
        self._build = build
        self._stand_ins = stand_ins
        self._statements: dict[tuple[str, str], Any] = {}

    def _statement(self):
        key = (connection.alias, connection.vendor)
        statement = self._statements.get(key)
        if statement is None:
            statement = self._statements[key] = self._compile()
        return statement

    def _compile(self):
        raise NotImplementedError


class Compiled(_CompiledOnce):
    """A model queryset compiled once per database (and process), run again with new values,
    giving model instances as the ORM would, related objects of ``select_related`` included.

    ``build(**stand_ins)`` must return a plain model queryset (no ``values()``, annotations or
    prefetches: :class:`CompiledRows` is for rows). The populating follows Django's ModelIterable.
    """

    def objects(self, **values) -> list[Any]:
        statement = self._statement()
        with connection.cursor() as cursor:
            cursor.execute(statement.prepared.sql, statement.prepared.bind(**values))
            rows = cursor.fetchall()
        found = []
        start, end, model, db = statement.fields_start, statement.fields_end, statement.model, connection.alias
        for raw in rows:
            row = list(raw)
            for position, (functions, expression) in statement.converters:
                value = row[position]
                for convert in functions:
                    value = convert(value, expression, connection)
                row[position] = value
            instance = model.from_db(db, statement.attnames, row[start:end])
            for populator in statement.related_populators:
                populator.populate(row, instance)
            found.append(instance)
        return found

    def first(self, **values):
        """The first instance found, or None (the queryset should hold its own order and [:1])."""
        found = self.objects(**values)
        return found[0] if found else None

    def _compile(self) -> _ModelsStatement:
        queryset = self._build(**self._stand_ins)
        if queryset._iterable_class is not ModelIterable or queryset._prefetch_related_lookups:
            raise ValueError("Compiled takes a plain model queryset; use prepare() for values")
        compiler = queryset.query.get_compiler(using=queryset.db)
        sql, params = compiler.as_sql()
        if compiler.annotation_col_map:
            raise ValueError("Compiled takes no annotations")
        select, klass_info = compiler.select, compiler.klass_info
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        converters = compiler.get_converters([column for column, _sql, _alias in select])
        return _ModelsStatement(
            prepared=Prepared(sql, tuple(params), _slots(params, self._stand_ins)),
            model=klass_info["model"],
            fields_start=start,
            fields_end=end,
            attnames=tuple(column[0].target.attname for column in select[start:end]),
            related_populators=tuple(get_related_populators(klass_info, select, queryset.db)),
            converters=tuple(converters.items()),
        )


class CompiledRows(_CompiledOnce):
    """:class:`Prepared` for a values_list queryset, compiled once per database on first use (values
    come back as the database gives them: no converters)."""

    def statement(self) -> Prepared:
        return self._statement()

    def _compile(self) -> Prepared:
        return prepare(self._build, **self._stand_ins)

    def rows(self, **values) -> list[tuple]:
        return self.statement().rows(**values)

    def first_value(self, **values):
        return self.statement().first_value(**values)


def quoted(name: str) -> str:
    return connection.ops.quote_name(name)


def index_hint(vendor: str, index: str) -> str:
    """`` INDEXED BY index`` on SQLite, else nothing: SQLite keeps no statistics for mlopen's
    tables, and a hand-written statement that needs one index (a partial one, say) names it."""
    return f" INDEXED BY {quoted(index)}" if vendor == "sqlite" else ""


def columns(model, *fields: str) -> Sequence[str]:
    """The quoted column names of ``model``'s ``fields``, for statements written by hand."""
    return [quoted(model._meta.get_field(field).column) for field in fields]


def unique_match(queryset: QuerySet):
    """The one row a lookup on a unique key finds, or None.

    What ``.first()`` gives, without its ORDER BY (the model's ordering, else the primary key):
    compiling that ordering cost ~0.15 ms a query on every request's path, for nothing when at
    most one row can match.
    """
    return next(iter(queryset.order_by()[:1]), None)
