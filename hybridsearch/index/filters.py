"""Metadata filters: a small query language over documents' JSON metadata, evaluated on columnar values.

The language (a subset of MongoDB's), as a dict:

===================================  ===========================================================
``{"lang": "sw"}``                   equality (same as ``{"lang": {"$eq": "sw"}}``)
``{"lang": {"$ne": "sw"}}``          not equal; documents without the field match
``{"lang": {"$in": ["sw", "yo"]}}``  membership; ``$nin`` is its negation (missing fields match)
``{"year": {"$gte": 2000, "$lt": 2010}}``  numeric range: ``$gt``, ``$gte``, ``$lt``, ``$lte``
``{"title": {"$exists": True}}``     the document has the field (any value)
``{"lang": "sw", "year": 2020}``     several keys: all must hold (AND)
``{"$or": [{...}, {...}]}``          any of the sub-filters; ``{"$and": [...]}`` all of them
===================================  ===========================================================

Values compare by JSON type: numbers with numbers, exactly as Python compares them (``2000`` equals ``2000.0``;
integers past 2**53 keep every digit, so ``1983516295378495150`` and ``1983516295378495200`` differ although
they are the same float64; ``true`` is not ``1``), strings
with strings, and ``true``, ``false``, ``null`` with themselves. Range operators take numbers only. Lists and
objects in metadata are stored and returned but cannot be filtered on (only ``$exists`` sees them).

A filter naming a field that no document has, an unknown operator or a malformed value raises
:class:`~hybridsearch.errors.FilterError`.

Metadata is kept per field as columns: a float64 array of numeric values (NaN where absent) and int32 codes into a
vocabulary of the other scalars (``-1`` where absent), so a filter costs a few vectorised comparisons per field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from ..errors import FilterError

__all__ = ["COMPARISONS", "Column", "Condition", "Filter", "build_columns", "parse_filter"]

COMPARISONS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")
_LOGICAL = ("$and", "$or")
_RANGE = {"$gt": np.greater, "$gte": np.greater_equal, "$lt": np.less, "$lte": np.less_equal}
_EXACT_FLOAT = 2**53  # integers up to this magnitude are exact float64 values
_INT64 = 2**63


# ----------------------------------------------------------------------------------------------- values
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool, np.bool_)) or _is_number(v)


def category(v: Any) -> str | bool | None:
    """A non-numeric scalar as stored in a column's vocabulary (numpy scalars become Python ones)."""
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, str):
        return str(v)
    return v  # bool or None


class Column:
    """One metadata field over ``n`` documents.

    ``num``: float64 ``(n,)``, NaN where the value is not a number; ``cat``: int32 ``(n,)`` codes into ``vocab``
    (the field's distinct strings, booleans and null), ``-1`` elsewhere; ``nested``: bool ``(n,)`` where the value
    is a list or object; ``big``: int64 ``(n,)``, the exact value of numbers beyond 2**53 in magnitude (integers,
    or integral floats below 2**63) and ``0`` elsewhere, so comparisons keep Python's integer semantics where
    float64 would round. Arrays that would hold nothing are ``None``. ``vocab`` may be given as a loader, called
    on first use, so that opening an index with a high-cardinality text field (titles, urls) stays fast.
    """

    def __init__(
        self,
        n: int,
        num: np.ndarray | None = None,
        cat: np.ndarray | None = None,
        vocab: Sequence[str | bool | None] | Callable[[], Sequence[str | bool | None]] = (),
        nested: np.ndarray | None = None,
        big: np.ndarray | None = None,
    ) -> None:
        self.n, self.num, self.cat, self.nested, self.big = n, num, cat, nested, big
        self._vocab: tuple[str | bool | None, ...] | None = None if callable(vocab) else tuple(vocab)
        self._loader = vocab if callable(vocab) else None
        self._codes: dict[Any, int] | None = None

    @property
    def vocab(self) -> tuple[str | bool | None, ...]:
        if self._vocab is None:
            assert self._loader is not None
            self._vocab = tuple(self._loader())
        return self._vocab

    def code(self, value: Any) -> int:
        if self._codes is None:
            self._codes = {v: i for i, v in enumerate(self.vocab)}
        # True == 1 in Python, but a column's vocabulary never holds numbers, so bool keys cannot collide
        return self._codes.get(category(value), -1)

    def equals(self, value: Any) -> np.ndarray:
        if _is_number(value):
            if self.num is None:
                return np.zeros(self.n, bool)
            return self._numeric("$eq", value)
        if self.cat is None:
            return np.zeros(self.n, bool)
        code = self.code(value)
        if code < 0:
            return np.zeros(self.n, bool)
        return np.asarray(self.cat == code)

    def _numeric(self, op: str, value: Any) -> np.ndarray:
        """``document value <op> value`` with Python's exact int/float semantics (NaN, i.e. absent, is False)."""
        num = np.asarray(self.num)
        v = value.item() if isinstance(value, np.generic) else value
        big = None if self.big is None else np.asarray(self.big)
        exact_v = isinstance(v, float) or abs(v) <= _EXACT_FLOAT
        with np.errstate(invalid="ignore"):
            if exact_v and big is None:  # the usual case: every value involved is an exact float64
                return np.asarray(_RANGE[op](num, float(v)) if op != "$eq" else num == float(v))
            out = np.zeros(self.n, bool)
            at_big = np.zeros(self.n, bool) if big is None else big != 0
            f_at = np.flatnonzero(~at_big & ~np.isnan(num))
            lt, eq, gt = _compare_floats(num[f_at], v)
            out[f_at] = _pick(op, lt, eq, gt)
            if big is not None and at_big.any():
                b_at = np.flatnonzero(at_big)
                lt, eq, gt = _compare_ints(big[b_at], v)
                out[b_at] = _pick(op, lt, eq, gt)
        return out

    def present(self) -> np.ndarray:
        out = np.zeros(self.n, bool)
        if self.num is not None:
            out |= ~np.isnan(self.num)
        if self.cat is not None:
            out |= self.cat >= 0
        if self.nested is not None:
            out |= self.nested
        return out

    def compare(self, op: str, bound: Any) -> np.ndarray:
        if self.num is None:
            return np.zeros(self.n, bool)
        return self._numeric(op, bound)  # NaN (absent) compares False

    @property
    def filterable(self) -> bool:
        return self.num is not None or self.cat is not None


def _pick(op: str, lt: np.ndarray, eq: np.ndarray, gt: np.ndarray) -> np.ndarray:
    return {"$eq": eq, "$gt": gt, "$gte": gt | eq, "$lt": lt, "$lte": lt | eq}[op]


def _compare_floats(f: np.ndarray, v: int | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``(f < v, f == v, f > v)`` for float64 documents ``f`` and a Python number ``v``."""
    if isinstance(v, float) or abs(v) <= _EXACT_FLOAT:
        fv = float(v)
        return f < fv, f == fv, f > fv
    # v is an integer that float64 cannot hold exactly: integral floats below 2**63 compare as int64, the rest
    # (fractions, which are below 2**53 in magnitude, and huge floats) cannot equal v and order by float value
    lt, eq, gt = np.zeros(f.shape, bool), np.zeros(f.shape, bool), np.zeros(f.shape, bool)
    whole = (np.abs(f) < _INT64) & (f == np.floor(f))
    fi = f[whole].astype(np.int64)
    lt[whole], eq[whole], gt[whole] = fi < v, fi == v, fi > v
    rest = np.flatnonzero(~whole)  # fractions (below 2**53 in magnitude) and floats past 2**63: few, and never equal
    vals = f[rest].tolist()
    lt[rest] = [x < v for x in vals]  # Python compares int and float exactly
    gt[rest] = [x > v for x in vals]
    return lt, eq, gt


def _compare_ints(d: np.ndarray, v: int | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ``(d < v, d == v, d > v)`` for int64 documents ``d`` and a Python number ``v``."""
    if isinstance(v, float):
        if not -float(_INT64) <= v < float(_INT64):
            return np.full(d.shape, v > 0), np.zeros(d.shape, bool), np.full(d.shape, v < 0)
        fl = math.floor(v)
        if v == fl:
            return d < fl, d == fl, d > fl
        return d <= fl, np.zeros(d.shape, bool), d > fl
    if not -_INT64 <= v < _INT64:
        return np.full(d.shape, v > 0), np.zeros(d.shape, bool), np.full(d.shape, v < 0)
    return d < v, d == v, d > v


def _exact_int(v: Any) -> int | None:
    """The int64 value of a number float64 cannot hold exactly (an integer past 2**53), else ``None``."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return v if abs(v) > _EXACT_FLOAT else None
    if isinstance(v, (float, np.floating)) and _EXACT_FLOAT < abs(float(v)) < _INT64:
        return int(v)  # an integral float: its exact int64 value
    return None


def build_columns(metadata: Sequence[Mapping[str, Any]]) -> dict[str, Column]:
    """Columns for every top-level field of ``metadata`` (one dict per document)."""
    n = len(metadata)
    values: dict[str, tuple[list[int], list[Any]]] = {}
    for i, meta in enumerate(metadata):
        for key, v in meta.items():
            slot = values.get(key)
            if slot is None:
                slot = values[key] = ([], [])
            slot[0].append(i)
            slot[1].append(v)
    out: dict[str, Column] = {}
    for key, (idx, vals) in values.items():
        num_i, num_v, cat_i, cat_v, nest_i = [], [], [], [], []
        for i, v in zip(idx, vals, strict=True):
            t = type(v)
            if t is str:
                cat_i.append(i)
                cat_v.append(v)
            elif t is float or t is int:
                if t is int and not -_INT64 <= v < _INT64:
                    raise FilterError(
                        f"metadata field {key!r} holds the integer {v}, outside the signed 64-bit range that filters "
                        "compare exactly; store it as a string"
                    )
                num_i.append(i)
                num_v.append(v)
            elif _is_number(v):
                num_i.append(i)
                num_v.append(v.item() if isinstance(v, np.generic) else v)
            elif _is_scalar(v):
                cat_i.append(i)
                cat_v.append(category(v))
            else:
                nest_i.append(i)
        num = cat = nest = big = None
        vocab: tuple[str | bool | None, ...] = ()
        if num_i:
            num = np.full(n, np.nan)
            num[num_i] = np.asarray([float(v) for v in num_v], dtype=np.float64)
            exact = [(i, e) for i, v in zip(num_i, num_v, strict=True) if (e := _exact_int(v)) is not None]
            if exact:
                big = np.zeros(n, np.int64)
                big[[i for i, _ in exact]] = [e for _, e in exact]
        if cat_i:
            codes: dict[Any, int] = {}
            cat = np.full(n, -1, np.int32)
            cat[cat_i] = [codes.setdefault(v, len(codes)) for v in cat_v]
            vocab = tuple(codes)
        if nest_i:
            nest = np.zeros(n, bool)
            nest[nest_i] = True
        out[key] = Column(n, num, cat, vocab, nest, big)
    return out


# ----------------------------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Condition:
    """``field op value``: one comparison."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Filter:
    """``all`` (AND) or ``any`` (OR) of conditions and nested filters."""

    mode: str  # "and" | "or"
    parts: tuple[Union[Condition, Filter], ...]  # noqa: UP007 - a forward reference in a runtime tuple

    @property
    def fields(self) -> set[str]:
        """Every field the filter names."""
        out: set[str] = set()
        for p in self.parts:
            out |= p.fields if isinstance(p, Filter) else {p.field}
        return out

    @property
    def conditions(self) -> list[Condition]:
        """Every comparison, nested filters flattened."""
        out: list[Condition] = []
        for p in self.parts:
            out += p.conditions if isinstance(p, Filter) else [p]
        return out

    def evaluate(self, columns: Mapping[str, Column], n: int) -> np.ndarray:
        """A bool mask over ``n`` documents described by ``columns`` (a field absent from ``columns`` is absent
        from every document)."""
        out = np.ones(n, bool) if self.mode == "and" else np.zeros(n, bool)
        for p in self.parts:
            m = p.evaluate(columns, n) if isinstance(p, Filter) else _condition(p, columns.get(p.field), n)
            if self.mode == "and":
                out &= m
            else:
                out |= m
        return out


def _condition(c: Condition, col: Column | None, n: int) -> np.ndarray:
    if c.op == "$exists":
        has = col.present() if col is not None else np.zeros(n, bool)
        return has if c.value else ~has
    if col is None:
        return np.ones(n, bool) if c.op in ("$ne", "$nin") else np.zeros(n, bool)
    if c.op == "$eq":
        return col.equals(c.value)
    if c.op == "$ne":
        return ~col.equals(c.value)
    if c.op in ("$in", "$nin"):
        m = np.zeros(n, bool)
        for v in c.value:
            m |= col.equals(v)
        return m if c.op == "$in" else ~m
    return col.compare(c.op, c.value)


def _check_value(field: str, op: str, v: Any) -> Any:
    if op == "$exists":
        if not isinstance(v, (bool, np.bool_)):
            raise FilterError(f"{field}: $exists takes true or false, got {v!r}")
        return bool(v)
    if op in ("$in", "$nin"):
        if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
            raise FilterError(f"{field}: {op} takes a list of values, got {v!r}")
        vals = list(v)
        for x in vals:
            _check_scalar(field, op, x)
        return tuple(vals)
    if op in _RANGE:
        if not _is_number(v) or math.isnan(float(v)):
            raise FilterError(f"{field}: {op} compares numbers only, got {v!r}")
        return v.item() if isinstance(v, np.generic) else v
    _check_scalar(field, op, v)
    return v


def _check_scalar(field: str, op: str, v: Any) -> None:
    if isinstance(v, (list, tuple, set)):
        raise FilterError(f"{field}: {op} takes one value, got a list {v!r}; use $in for membership")
    if not _is_scalar(v):
        raise FilterError(f"{field}: {op} compares strings, numbers, booleans or null; got {type(v).__name__}")
    if _is_number(v) and math.isnan(float(v)):
        raise FilterError(f"{field}: NaN never matches anything; remove it from the filter")


def parse_filter(spec: Mapping[str, Any] | Filter) -> Filter:
    """Validate a filter dict (see the module docs) and return its :class:`Filter`; raises FilterError."""
    if isinstance(spec, Filter):
        return spec
    if not isinstance(spec, Mapping):
        raise FilterError(f"a filter must be a dict such as {{'lang': 'sw'}}, got {type(spec).__name__}")
    if not spec:
        raise FilterError("the filter is empty; pass None for no filter")
    parts: list[Condition | Filter] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise FilterError(f"filter keys must be field names (strings), got {key!r}")
        if key.startswith("$"):
            if key not in _LOGICAL:
                raise FilterError(f"unknown operator {key!r} at the top of a filter; use field names, $and or $or")
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or not value:
                raise FilterError(f"{key} takes a non-empty list of filters, got {value!r}")
            parts.append(Filter(key[1:], tuple(parse_filter(v) for v in value)))
        elif isinstance(value, Mapping):
            if not value:
                raise FilterError(f"{key}: empty operator dict; write e.g. {{'$eq': value}}")
            for op, v in value.items():
                if op not in COMPARISONS:
                    raise FilterError(
                        f"{key}: unsupported operator {op!r}; supported: {', '.join(COMPARISONS)}"
                        + ("" if str(op).startswith("$") else " (nested objects cannot be matched)")
                    )
                parts.append(Condition(key, op, _check_value(key, op, v)))
        else:
            parts.append(Condition(key, "$eq", _check_value(key, "$eq", value)))
    return Filter("and", tuple(parts))
