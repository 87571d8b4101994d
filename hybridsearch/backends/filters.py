"""Translate the library's metadata filters (:mod:`hybridsearch.index.filters`) into Milvus and Qdrant filters.

Metadata lives in a JSON field ``metadata`` (Milvus) or the payload object ``metadata`` (Qdrant). The
semantics kept: ``$ne`` and ``$nin`` also match documents without the field; numbers compare as numbers
(``2000`` equals ``2000.0``). What an engine cannot express raises :class:`~hybridsearch.errors.FilterError`
naming the engine and the condition:

- Milvus: equality with ``null`` (JSON nulls are not comparable in Milvus expressions);
- Qdrant: none of the operators; ``$exists`` is ``is_empty`` negated, so a field holding ``null`` or ``[]``
  counts as absent there (the embedded index counts it as present).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ..errors import FilterError
from ..index.filters import Condition, Filter, parse_filter

__all__ = ["to_milvus", "to_qdrant"]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------- Milvus
def _milvus_value(v: Any, c: Condition) -> str:
    if v is None:
        raise FilterError(f"Milvus cannot compare a JSON field with null ({c.field} {c.op} null); filter on another value")
    if isinstance(v, bool):
        return "true" if v else "false"
    if _num(v):
        if not math.isfinite(float(v)):
            raise FilterError(f"{c.field}: infinite values cannot be sent to Milvus")
        x = float(v)
        return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)
    return json.dumps(str(v), ensure_ascii=False)


def _milvus_condition(c: Condition) -> str:
    f = f"metadata[{json.dumps(c.field, ensure_ascii=False)}]"
    if c.op == "$exists":
        return f"(exists {f})" if c.value else f"(not exists {f})"
    if c.op == "$eq":
        return f"({f} == {_milvus_value(c.value, c)})"
    if c.op == "$ne":
        return f"(not exists {f} or {f} != {_milvus_value(c.value, c)})"
    if c.op in ("$in", "$nin"):  # Milvus takes "in" only on plain fields, not on JSON paths: spelled out
        if c.op == "$in":
            return "(" + " or ".join(f"{f} == {_milvus_value(v, c)}" for v in c.value) + ")" if c.value else "(false)"
        ne = " and ".join(f"{f} != {_milvus_value(v, c)}" for v in c.value)
        return f"(not exists {f} or ({ne}))" if c.value else "(true)"
    ops = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
    return f"({f} {ops[c.op]} {_milvus_value(c.value, c)})"


def _milvus(f: Filter | Condition) -> str:
    if isinstance(f, Condition):
        return _milvus_condition(f)
    if not f.parts:
        return "(true)" if f.mode == "and" else "(false)"
    joiner = " and " if f.mode == "and" else " or "
    return "(" + joiner.join(_milvus(p) for p in f.parts) + ")"


def to_milvus(spec: Mapping[str, Any] | Filter) -> str:
    """A Milvus boolean expression over the JSON field ``metadata``.

    >>> to_milvus({"lang": "sw", "year": {"$gte": 2000}})
    '((metadata["lang"] == "sw") and (metadata["year"] >= 2000))'
    """
    return _milvus(parse_filter(spec))


# ---------------------------------------------------------------------------------------------- Qdrant
def _qdrant_eq(models: Any, key: str, v: Any, c: Condition) -> Any:
    if v is None:
        return models.IsNullCondition(is_null=models.PayloadField(key=key))
    if _num(v):  # a range matches integer and float payloads alike, as the embedded index compares numbers
        return models.FieldCondition(key=key, range=models.Range(gte=float(v), lte=float(v)))
    return models.FieldCondition(key=key, match=models.MatchValue(value=v))


def _qdrant_condition(models: Any, c: Condition) -> tuple[list[Any], list[Any]]:
    """(must, must_not) lists for one condition."""
    key = f"metadata.{c.field}"
    if "." in c.field or "[" in c.field:
        raise FilterError(f"Qdrant reads {c.field!r} as a nested path; rename fields with '.' or '[' before migrating")
    if c.op == "$exists":
        cond = models.IsEmptyCondition(is_empty=models.PayloadField(key=key))
        return ([], [cond]) if c.value else ([cond], [])
    if c.op == "$eq":
        return [_qdrant_eq(models, key, c.value, c)], []
    if c.op == "$ne":
        return [], [_qdrant_eq(models, key, c.value, c)]
    if c.op in ("$in", "$nin"):
        any_of = models.Filter(should=[_qdrant_eq(models, key, v, c) for v in c.value]) if c.value else None
        if c.op == "$in":
            return [any_of if any_of is not None else models.HasIdCondition(has_id=[])], []
        return ([], [any_of]) if any_of is not None else ([], [])
    rng = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}[c.op]
    return [models.FieldCondition(key=key, range=models.Range(**{rng: float(c.value)}))], []


def _qdrant(models: Any, f: Filter | Condition) -> Any:
    if isinstance(f, Condition):
        must, must_not = _qdrant_condition(models, f)
        return models.Filter(must=must or None, must_not=must_not or None)
    subs = [_qdrant(models, p) for p in f.parts]
    if f.mode == "and":
        return models.Filter(must=subs)
    return models.Filter(should=subs) if subs else models.Filter(must=[models.HasIdCondition(has_id=[])])


def to_qdrant(spec: Mapping[str, Any] | Filter) -> Any:
    """A ``qdrant_client.models.Filter`` over the payload object ``metadata``."""
    from qdrant_client import models

    return _qdrant(models, parse_filter(spec))
