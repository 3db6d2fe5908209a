"""Lifetimes of Vulkan objects.

Each Vulkan object is wrapped once, by a :class:`VkObject`. Its destroy function
is registered with ``weakref.finalize``, so it runs exactly once: on
``destroy()``, when the last reference goes, when its owner closes, or at
interpreter exit (finalizers run there in reverse creation order, so children
go before the device that made them). The callback never holds the wrapper.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import Counter

from ..errors import DestroyedError

_live: Counter = Counter()
_live_lock = threading.Lock()
_order = itertools.count()


def live_objects() -> dict[str, int]:
    """Counts of live Vulkan objects by wrapper type (for leak tests).

    Example::

        before = live_objects(); buf.destroy(); assert live_objects() == before
    """
    with _live_lock:
        return {k: v for k, v in _live.items() if v}


_abandoned = False


def abandon_at_exit() -> None:
    """From now on, finalizers free nothing: the process is exiting with other threads still
    running, which may use any object; the operating system reclaims the device's memory."""
    global _abandoned
    _abandoned = True


def _run_destroy(kind: str, destroy_fn, args) -> None:
    with _live_lock:
        _live[kind] -= 1
    if not _abandoned:
        destroy_fn(*args)


class VkObject:
    """Base of every wrapper that owns Vulkan handles.

    Subclasses call ``_own(owner, destroy_fn, *args)`` once their handles exist;
    ``destroy_fn(*args)`` must free them and must not reference ``self``.
    """

    _finalizer: weakref.finalize | None = None
    _owner = None

    def _own(self, owner, destroy_fn, *args) -> None:
        kind = type(self).__name__
        with _live_lock:
            _live[kind] += 1
        self._finalizer = weakref.finalize(self, _run_destroy, kind, destroy_fn, args)
        self._order = next(_order)
        self._owner = owner
        if owner is not None:
            owner._adopt(self)

    @property
    def alive(self) -> bool:
        """False once destroyed, or once the owner that made it was closed (closing destroys children)."""
        f = self._finalizer
        return f is not None and f.alive

    def _check_alive(self) -> None:
        if not self.alive:
            raise DestroyedError(f"{type(self).__name__} was used after it, or its device, was destroyed")

    # Set by destroy() (also when an owner's close destroys its children): a plain attribute that
    # hot paths read where the ``alive`` property would cost a finalizer lookup per use.
    destroyed = False

    def destroy(self) -> None:
        """Free the Vulkan objects now; later calls do nothing."""
        self.destroyed = True
        if self._finalizer is not None:
            self._finalizer()


class Owner(VkObject):
    """A VkObject that other VkObjects depend on (a device, a pool).

    Holds weak references to its children; ``destroy()`` frees the live ones
    in reverse creation order before freeing itself.
    """

    def _init_children(self) -> None:
        self._children: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

    def _adopt(self, child: VkObject) -> None:
        self._children[child._order] = child

    def _destroy_children(self) -> Exception | None:
        """Destroy the live children, newest first, every one even past a failure; returns the
        first failure for the caller to raise once it is destroyed itself."""
        failure = None
        for key in sorted(self._children.keys(), reverse=True):
            child = self._children.get(key)
            if child is not None:
                try:
                    child.destroy()
                except Exception as exc:  # noqa: BLE001 - raised by the caller after its own teardown
                    failure = failure or exc
        return failure
