"""Collects what the Khronos validation layer reports.

Every instance created with validation on sends its messages here. Tests read
:func:`errors_since` to fail on any validation error; a user can add a
listener, e.g. to raise or log.

Example::

    mark = validation.mark()
    ...  # Vulkan work
    assert validation.errors_since(mark) == []
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Callable

import vulkan as vkb

LAYER = "VK_LAYER_KHRONOS_validation"


@dataclass(frozen=True)
class Message:
    severity: str  # "error", "warning", "info", "verbose"
    text: str


_messages: list[Message] = []
_lock = threading.Lock()
_listeners: list[Callable[[Message], None]] = []

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


def add_listener(fn: Callable[[Message], None]) -> None:
    with _lock:
        _listeners.append(fn)


def remove_listener(fn: Callable[[Message], None]) -> None:
    with _lock:
        _listeners.remove(fn)


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
