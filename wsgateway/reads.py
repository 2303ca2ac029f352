"""The reads every connect makes, as plain SQL built once per model.

A connect reads the token's user and the clipboard. Through the ORM, building
each query cost several times running it (347 against 90 microseconds for a
user by primary key, measured on SQLite), and the reads share one thread with
every other socket's database work. The SQL is built here from the model's
metadata, once per database alias; rows become instances through the public
``Model.from_db``, so the instances are the ORM's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, TypeVar

from django.db import connections, models, router
from django.db.models.manager import BaseManager

M = TypeVar("M", bound=models.Model)


def _column(model: type[models.Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field) and field.column, f"{name} is not a column of {model.__name__}"
    return field.column


@lru_cache(maxsize=64)
def _select(model: type[models.Model], using: str, where_field: str, order_field: str | None) -> str:
    qn = connections[using].ops.quote_name
    meta = model._meta
    columns = ", ".join(qn(field.column) for field in meta.concrete_fields if field.column)
    sql = f"SELECT {columns} FROM {qn(meta.db_table)} WHERE {qn(_column(model, where_field))} = %s"
    if order_field is not None:
        sql += f" ORDER BY {qn(_column(model, order_field))}"
    return sql


@lru_cache(maxsize=64)
def _converters(model: type[models.Model], using: str) -> list[tuple[int, list[Any], Any]]:
    # What the ORM's compiler applies to each column (datetimes from text on SQLite, JSON, ...).
    connection = connections[using]
    found = []
    for index, field in enumerate(model._meta.concrete_fields):
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if converters:
            found.append((index, converters, column))
    return found


def whole_table(model: type[models.Model]) -> bool:
    """Whether ``model``'s default manager answers from its whole table, as :func:`fetch` reads it: its
    ``get_queryset`` is Django's own. A site's user model whose manager hides rows (soft-deleted users,
    say) is then read through that manager, so that a connect never finds a user the site hides."""
    return type(model._default_manager).get_queryset is BaseManager.get_queryset


# One statement per count: a trip holds at most a hundred (wsgateway.trips).
@lru_cache(maxsize=128)
def _select_in(model: type[models.Model], using: str, where_field: str, count: int) -> str:
    equal = _select(model, using, where_field, None)
    return equal.removesuffix(" = %s") + f" IN ({', '.join(['%s'] * count)})"


def fetch(model: type[M], where_field: str, value: Any, *, order_by: str | None = None) -> list[M]:
    """Instances of ``model`` whose ``where_field`` equals ``value``, from its table directly.

    Unlike ``model._default_manager.filter(...)`` this skips any filtering the
    default manager adds: use it where the table is the whole truth.
    """
    using = router.db_for_read(model)
    connection = connections[using]
    value = model._meta.get_field(where_field).get_db_prep_value(value, connection)  # type: ignore[union-attr]
    return _instances(model, using, _select(model, using, where_field, order_by), [value])


def fetch_in(model: type[M], where_field: str, values: Sequence[Any]) -> list[M]:
    """Instances of ``model`` whose ``where_field`` is one of ``values`` (distinct; a trip's worth,
    not thousands), in no particular order, as :func:`fetch` reads them: one statement for many
    connects. One value is :func:`fetch`'s own statement."""
    if len(values) == 1:
        return fetch(model, where_field, values[0])
    if not values:
        return []
    using = router.db_for_read(model)
    connection = connections[using]
    field = model._meta.get_field(where_field)
    prepared = [field.get_db_prep_value(value, connection) for value in values]  # type: ignore[union-attr]
    return _instances(model, using, _select_in(model, using, where_field, len(prepared)), prepared)


def _instances(model: type[M], using: str, sql: str, params: list[Any]) -> list[M]:
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    converters = _converters(model, using)
    attnames = [field.attname for field in model._meta.concrete_fields]
    instances = []
    for row in rows:
        values = list(row)
        for index, functions, column in converters:
            for convert in functions:
                values[index] = convert(values[index], column, connection)
        instances.append(model.from_db(using, attnames, values))
    return instances
