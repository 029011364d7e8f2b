"""One canonical form for class values: ``"1"``, ``1`` and ``1.0`` are one class, so are ``True`` and ``"true"``.

A serving system may send a label as ``1`` while the model predicts ``"1"``; compared with ``==``
they differ and every such event would count as a wrong prediction. The reference knows its class
set (values and their JSON types); :class:`ClassSet` maps every spelling of a class onto the
reference's value, and says so when a value is no class at all, so the engine rejects it with a
reason instead of counting it wrong.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

__all__ = ["ClassSet", "class_key", "distinct_classes"]

# A class spelled as a boolean matches the class spelled 1 / 0 when the set has no boolean one.
_BOOLEAN_ALIASES = (("true", "1"), ("false", "0"), ("1", "true"), ("0", "false"))
# Bounded: a producer that spells classes in ever new ways ("1.0", "1.00", ...) cannot grow it forever.
_CACHE_LIMIT = 1024


def _plain(value: Any) -> Any:
    # numpy scalars (np.int64, np.str_, np.bool_) behave as their Python equivalents here.
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _number_key(number: float) -> str:
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number)


def class_key(value: Any) -> str:
    """The canonical text of a class value.

    Booleans and the words true/false (any case) are ``"true"`` / ``"false"``; numbers and
    numeric strings are their shortest number text (``1``, ``1.0`` and ``"1"`` are ``"1"``);
    any other string is itself (case kept: ``"A"`` and ``"a"`` may be two classes).

    >>> [class_key(v) for v in (1, 1.0, "1", " 1 ", True, "TRUE", "b", 2.5)]
    ['1', '1', '1', '1', 'true', 'true', 'b', '2.5']
    """
    value = _plain(value)
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return _number_key(value)
    if type(value) is str:
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower()
        try:
            return _number_key(float(text))
        except ValueError:
            return value
    raise TypeError(f"a class must be a number, string or boolean, got {type(value).__name__}")


class ClassSet:
    """The classes of a classifier, and the map from any spelling of a class onto it.

    Parameters
    ----------
    classes
        The class values as the reference stores them (numbers, strings or booleans). Two
        values with the same :func:`class_key` are an error: they would be one class.

    Examples
    --------
    >>> from tripwire.classes import ClassSet
    >>> classes = ClassSet([0, 1, 2])
    >>> classes.canonical("2"), classes.canonical(1.0), classes.canonical(True)
    (2, 1, 1)
    >>> classes.canonical("3") is None
    True
    >>> classes.index("1")
    1
    >>> ClassSet(["no", "yes"]).canonical("yes")
    'yes'
    """

    def __init__(self, classes: Sequence[Any]) -> None:
        self.classes = [_plain(c) for c in classes]
        self._by_key: dict[str, int] = {}
        for position, value in enumerate(self.classes):
            key = class_key(value)
            if key in self._by_key:
                other = self.classes[self._by_key[key]]
                raise ValueError(f"classes {other!r} and {value!r} are the same class ({key!r})")
            self._by_key[key] = position
        for alias, key in _BOOLEAN_ALIASES:
            if alias not in self._by_key and key in self._by_key:
                self._by_key[alias] = self._by_key[key]
        # Per type, raw value -> position: 1 == 1.0 == True in one dict, so each type has its own.
        # Read-only outside this class (Admission.admit_run looks values up in it); a miss goes to index().
        self.spellings: dict[type, dict[Any, int]] = {}
        self._cached = 0

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, value: Any) -> int | None:
        """Position of ``value``'s class in :attr:`classes`, or ``None`` when it is no class."""
        seen = self.spellings.get(type(value))
        if seen is not None:
            position = seen.get(value)
            if position is not None:
                return position
        try:
            position = self._by_key.get(class_key(value))
        except TypeError:
            return None
        if position is not None and self._cached < _CACHE_LIMIT:
            self.spellings.setdefault(type(value), {})[value] = position
            self._cached += 1
        return position

    def canonical(self, value: Any) -> Any:
        """The reference's spelling of ``value``'s class, or ``None`` when it is no class."""
        seen = self.spellings.get(type(value))  # index()'s first step, inlined: this runs per event
        position = seen.get(value) if seen is not None else None
        if position is None:
            position = self.index(value)
        return None if position is None else self.classes[position]

    def describe(self, limit: int = 10) -> str:
        shown = ", ".join(repr(c) for c in self.classes[:limit])
        return f"[{shown}{', ...' if len(self.classes) > limit else ''}]"


def _order(value: Any) -> tuple[int, float, str]:
    # Numbers (and booleans) in numeric order, then strings by their text: scikit-learn's order too.
    if type(value) in (bool, int, float):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def distinct_classes(values: Iterable[Any]) -> list[Any]:
    """The classes among ``values`` (missing ones skipped), one value per canonical form, sorted.

    >>> distinct_classes([10, 2, "2", None, 1.0])
    [1.0, 2, 10]
    """
    first: dict[str, Any] = {}
    for value in values:
        value = _plain(value)
        if value is None or (type(value) is float and math.isnan(value)):
            continue
        first.setdefault(class_key(value), value)
    return sorted(first.values(), key=_order)
