"""Collects what the Khronos validation layer reports.

Every instance created with validation on sends its messages here. Tests read
:func:`errors_since` to fail on any validation error; a user can add a
listener, e.g. to raise or log.

The exit gate: with HLX_VALIDATION on, a process in which the layer reported an
error that nobody took with :func:`claim_errors` prints those errors to stderr
at exit and exits with status 1, so a script, a CLI run or a subprocess of the
tests cannot hide one behind a clean exit. It runs after every Vulkan object's
finalizer (it is itself a ``weakref.finalize`` made before any of them, and
finalizers run newest first at exit), so errors raised while tearing down count
too. It ends the process with ``os._exit(1)`` after flushing stdout and stderr:
atexit hooks cannot set the exit status otherwise.

Example::

    mark = validation.mark()
    ...  # Vulkan work
    assert validation.errors_since(mark) == []
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Callable

import vulkan as vkb

LAYER = "VK_LAYER_KHRONOS_validation"


@dataclass(frozen=True)
class Message:
    severity: str  # "error", "warning", "info", "verbose"
    text: str


_messages: list[Message] = []
_claimed: set[int] = set()  # positions of errors someone took responsibility for
_lock = threading.Lock()
_listeners: list[Callable[[Message], None]] = []
EXIT_STATUS = 1

_SEVERITY = (
    (vkb.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT, "error"),
    (vkb.VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT, "warning"),
    (vkb.VK_DEBUG_UTILS_MESSAGE_SEVERITY_INFO_BIT_EXT, "info"),
    (vkb.VK_DEBUG_UTILS_MESSAGE_SEVERITY_VERBOSE_BIT_EXT, "verbose"),
)


def requested_by_environment() -> bool:
    """True when HLX_VALIDATION is set to 1/true/yes (the test suite sets it)."""
    return os.environ.get("HLX_VALIDATION", "").lower() in ("1", "true", "yes", "on")


def record(severity_bits: int, text: str) -> None:
    severity = next((name for bit, name in _SEVERITY if severity_bits & bit), "info")
    msg = Message(severity, text)
    with _lock:
        _messages.append(msg)
        listeners = list(_listeners)
    for listener in listeners:
        listener(msg)


def mark() -> int:
    """A position in the message log, for :func:`errors_since`."""
    with _lock:
        return len(_messages)


def messages_since(position: int) -> list[Message]:
    with _lock:
        return list(_messages[position:])


def errors_since(position: int) -> list[Message]:
    return [m for m in messages_since(position) if m.severity == "error"]


def claim_errors(position: int, end: int | None = None) -> list[Message]:
    """The errors from ``position`` (to ``end``), taken: the exit gate no longer reports them
    (the caller has, e.g. by failing a test)."""
    with _lock:
        found = [(i, m) for i, m in enumerate(_messages[position:end], position) if m.severity == "error"]
        _claimed.update(i for i, _ in found)
    return [m for _, m in found]


def unclaimed_errors() -> list[Message]:
    """Errors reported in this process that no :func:`claim_errors` took."""
    with _lock:
        return [m for i, m in enumerate(_messages) if m.severity == "error" and i not in _claimed]


def add_listener(fn: Callable[[Message], None]) -> None:
    with _lock:
        _listeners.append(fn)


def remove_listener(fn: Callable[[Message], None]) -> None:
    with _lock:
        _listeners.remove(fn)


def _exit_gate() -> None:
    if not requested_by_environment():
        return
    errs = unclaimed_errors()
    if not errs:
        return
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed stdout must not hide the report
        pass
    lines = [f"hlx_vulkan: Vulkan Validation reported {len(errs)} error(s) in this process (HLX_VALIDATION is on); "
             f"exiting with status {EXIT_STATUS}:"] + [f"- {m.text}" for m in errs]
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_STATUS)


class _Sentinel:
    pass


# Made at import, before any instance exists: weakref.finalize runs its exit callbacks newest
# first, so this one runs after every Vulkan object's finalizer.
_sentinel = _Sentinel()
_gate = weakref.finalize(_sentinel, _exit_gate)


def _callback(severity, types, data, user_data):
    # Runs inside the driver's call: an exception here cannot propagate, so
    # anything that goes wrong is recorded as text instead.
    try:
        record(severity, vkb.ffi.string(data.pMessage).decode(errors="replace"))
    except Exception as exc:  # noqa: BLE001
        record(severity, f"<unreadable validation message: {exc!r}>")
    return 0


def messenger_create_info(next_in_chain=None):
    return vkb.VkDebugUtilsMessengerCreateInfoEXT(
        pNext=next_in_chain,
        messageSeverity=vkb.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT
        | vkb.VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
        messageType=vkb.VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT
        | vkb.VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT
        | vkb.VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        pfnUserCallback=_callback,
    )
