"""Value classes without ``dataclasses``: equality, hash and repr from ``__slots__``.

The helper's start-up path cannot afford ``dataclasses`` (it imports ``inspect`` and ``re``:
docs/design.md, "The warm path"), so :class:`~redis_gocache.config.Config`,
:class:`~redis_gocache.store.entry.Entry` and :class:`~redis_gocache.wire.Request` write
their ``__init__`` out and take the rest from here.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from typing import ClassVar


class Value:
    """Equal and hashed by the values of the subclass's ``__slots__``, in order; shown by
    them too, except the names in ``_hidden`` (secrets)."""

    __slots__ = ()
    _hidden: ClassVar[frozenset[str]] = frozenset()

    def _names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = self.__slots__  # the concrete class's, not this one's ()
        return names

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._names())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Value)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._names()
                          if name not in self._hidden)
        return f"{type(self).__name__}({shown})"


class FrozenValue(Value):
    """A :class:`Value` whose fields cannot change once ``__init__`` has set them (with
    ``object.__setattr__``)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name}")
