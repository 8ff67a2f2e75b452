"""A branch's state: a dict that copies a value on first access (copy-on-access).

A fan-out no longer deep-copies the whole state for each branch. Its branches (and the run
that fans out) share the fan-out state's values, and a value is deep-copied by whoever
first takes it out: a branch pays for what it touches, not for the size of the state.
Shared values are never mutated, so the contract's isolation holds whatever a branch does
in place: no sibling sees it, and the fan-in's state does not change.

`BranchState` is a `dict` (isinstance, json, pickle, `**state`, `dict(state)`, `|`, copy
all work). Its storage always holds the current value of every key, shared or its own, so
whatever only *reads* the storage (len, `in`, ==, repr, iterating the keys) costs nothing;
every way to get a value out (`[]`, get, items, values, pop, setdefault, copy, and through
them dict(), `{**state}`, `**state`, json) first makes the value the state's own; pickling
and deep-copying read the storage (they copy anyway). While a branch runs, one memo keeps
values that were shared between keys shared between its copies.

A process branch runs over a base its worker keeps once per fan-out (`over`); what it
changed comes back as a `StateDelta`, merged over the caller's base (`merged`), so that
`parallel_results[i].state` still reads as the branch's full final state.
"""

from __future__ import annotations

import copy
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from dataclasses import dataclass
from typing import Any

from tead.errors import StateCopyError

#: values that need no copy: immutable all the way down
IMMUTABLE = frozenset({type(None), bool, int, float, complex, str, bytes, range})
_MISSING: Any = object()
NONE_OWN: frozenset[str] = frozenset()  # a state that has taken nothing out yet


class BranchState(dict[str, Any]):
    """A dict whose values are shared with others until first taken out, then copied."""

    __slots__ = ("_base", "_memo", "_own")

    # _own: keys whose value is this state's own (None: every key; NONE_OWN, shared by all
    # states until they take a value out, saves a set per branch). _memo: the deep-copy
    # memo of this state (made on first copy). _base: the shared values it was made over.
    _own: set[str] | frozenset[str] | None
    _memo: dict[int, Any] | None
    _base: Mapping[str, Any] | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._own = None
        self._memo = None
        self._base = None

    # --- making ----------------------------------------------------------------------------

    @classmethod
    def over(cls, base: Mapping[str, Any], own: Mapping[str, Any] | None = None) -> BranchState:
        """A state whose values are `base`'s, shared (copied on first access), plus `own`
        (also shared: copied when first taken out)."""
        state = cls(base)
        if own:
            dict.update(state, own)
        state._own = NONE_OWN
        state._base = base
        return state

    @property
    def base(self) -> Mapping[str, Any] | None:
        """The shared values this state was made over (`over`), if any."""
        return self._base

    def own_part(self) -> dict[str, Any]:
        """The current values that are not its base's (by identity): with the base, all a
        receiver needs to rebuild this state."""
        base = self._base or {}
        return {k: v for k, v in dict.items(self) if k not in base or base[k] is not v}

    @classmethod
    def merged(
        cls, base: Mapping[str, Any], delta: StateDelta, *, own: Mapping[str, Any] | None = None
    ) -> BranchState:
        """The final state of a branch that ran elsewhere over `base` (+ `own`): its changed
        values are its own, the rest shared with `base`."""
        state = cls.over(base, own)
        for key in delta.deleted:
            dict.pop(state, key, None)
        dict.update(state, delta.changed)
        state._own = set(delta.changed)
        return state

    def share(self) -> dict[str, Any]:
        """Freeze: from now on every value is shared (copied on first access, here too);
        the returned dict is the frozen values, for branches to share."""
        self._own = NONE_OWN
        self._memo = None
        return dict(dict.items(self))

    def settle(self) -> None:
        """The branch is over: forget its copy memo (it holds an entry per object copied),
        so that a result kept until the fan-in does not keep it too."""
        self._memo = None

    def raw(self) -> dict[str, Any]:
        """The current values as a plain dict, without copying: only for code that reads
        them and never mutates them (pickling, JSON encoding)."""
        return dict(dict.items(self))

    def delta(self, base: Mapping[str, Any], own: Mapping[str, Any]) -> StateDelta:
        """What this state changed since it was made `over(base, own)`: the values it took
        out or set (it may have mutated them), and the keys it dropped. What a branch run
        elsewhere sends back.

        By identity: a value still the very object it was made over has not changed (it
        was never handed out, or is immutable); one taken out is a copy, so it is sent
        even after a nested fan-out has shared it again."""
        changed = {}
        present = 0  # keys of base or own still here
        for key, value in dict.items(self):
            was = own.get(key, _MISSING)
            if was is _MISSING:
                was = base.get(key, _MISSING)
            if was is not _MISSING:
                present += 1
            if was is not value:
                changed[key] = value
        if present == len(base) + sum(1 for key in own if key not in base):
            return StateDelta(changed=changed)
        deleted = [k for k in base if not dict.__contains__(self, k)]
        deleted += [k for k in own if k not in base and not dict.__contains__(self, k)]
        return StateDelta(changed=changed, deleted=tuple(deleted))

    # --- copy-on-access --------------------------------------------------------------------

    def _take(self, key: str) -> Any:
        """The value of `key`, made this state's own first (KeyError if missing)."""
        value = dict.__getitem__(self, key)
        own = self._own
        if own is None or key in own:
            return value
        if type(own) is not set:
            own = self._own = set()
        if type(value) not in IMMUTABLE:
            if self._memo is None:
                self._memo = {}
            try:
                value = copy.deepcopy(value, self._memo)
            except Exception as exc:
                raise StateCopyError(key, exc) from None
            dict.__setitem__(self, key, value)
        own.add(key)
        return value

    def _own_all(self) -> None:
        if self._own is not None:
            for key in list(dict.__iter__(self)):
                self._take(key)
            self._own = None

    def __getitem__(self, key: str) -> Any:
        return self._take(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self._take(key) if dict.__contains__(self, key) else default

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        own = self._own
        if own is not None:
            if type(own) is not set:
                own = self._own = set()
            own.add(key)

    def __delitem__(self, key: str) -> None:
        dict.__delitem__(self, key)
        if type(self._own) is set:
            self._own.discard(key)

    def __iter__(self) -> Iterator[str]:
        # Defined so that dict(state), {**state}, f(**state) and update(state) take values
        # through keys() and [] (CPython reads a dict's storage directly otherwise).
        return dict.__iter__(self)

    def items(self) -> ItemsView[str, Any]:  # type: ignore[override]
        return ItemsView(self)

    def values(self) -> ValuesView[Any]:  # type: ignore[override]
        return ValuesView(self)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if not dict.__contains__(self, key):
            if default is _MISSING:
                raise KeyError(key)
            return default
        value = self._take(key)
        del self[key]
        return value

    def popitem(self) -> tuple[str, Any]:
        key = next(reversed(dict.keys(self)), _MISSING)
        if key is _MISSING:
            raise KeyError("popitem(): dictionary is empty")
        return key, self.pop(key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return self._take(key)
        self[key] = default
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        dict.clear(self)
        if self._own is not None:
            self._own = NONE_OWN

    def copy(self) -> dict[str, Any]:
        """A shallow copy, as dict.copy: a plain dict sharing this state's (own) values."""
        self._own_all()
        return dict(dict.items(self))

    def __copy__(self) -> dict[str, Any]:
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(self.raw(), memo)

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**self, **other}

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**other, **self}

    def __ior__(self, other: Any) -> BranchState:  # type: ignore[override]
        self.update(other)
        return self

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """Pickles as a plain dict of the current values (pickling copies anyway)."""
        return (dict, (self.raw(),))

    @classmethod
    def fromkeys(cls, keys: Iterable[str], value: Any = None) -> dict[str, Any]:  # type: ignore[override]
        return dict.fromkeys(keys, value)


@dataclass(frozen=True, slots=True)
class StateDelta:
    """What a branch run elsewhere changed in its state: the values it set or took out
    (which it may have mutated), and the keys it dropped."""

    changed: dict[str, Any]
    deleted: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (StateDelta, (self.changed, self.deleted))


def plain(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state`'s current values as a plain dict, without copying any (read-only use)."""
    return state.raw() if isinstance(state, BranchState) else dict(state)


@dataclass(frozen=True, slots=True)
class EntryRef:
    """Stands, in a branch's own part sent elsewhere, for entry `index` of the base's list
    (or tuple) `key`: the receiver puts that very object back, so that a for_each item
    stays the same object as its list entry there too."""

    key: str
    index: int


def entry_index(base: Mapping[str, Any]) -> dict[int, EntryRef]:
    """Where each entry of the base's top-level lists and tuples is, by object id."""
    return {
        id(entry): EntryRef(key, index)
        for key, value in base.items()
        if type(value) in (list, tuple)
        for index, entry in enumerate(value)
        if type(entry) not in IMMUTABLE
    }


def resolve_entries(own: dict[str, Any], base: Mapping[str, Any]) -> None:
    """Replace, in `own`, each EntryRef by the base's entry it stands for."""
    for key, value in own.items():
        if type(value) is EntryRef:
            own[key] = base[value.key][value.index]
