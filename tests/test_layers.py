"""Imports point down the layers only (../shared/GUIDE.md): a module may import from its own
layer and the layers below it, never from one above.

One deliberate refinement of the guide's table: the tape (``autograd.graph``: grad mode and
the ``differentiable`` decorator) sits below the ops, because every op declares its backward
rule beside its forward; the backward pass (``autograd.engine``) sits above them.
"""

from __future__ import annotations

import ast
import pathlib

import hlx_vulkan

ROOT = pathlib.Path(hlx_vulkan.__file__).parent
LAYERS = [
    {"errors", "version", "strict_mode"},
    {"vk", "compiler", "strict_spirv", "glslang_library"},
    {"memory"},
    {"runtime", "precision"},
    {"autograd.graph"},
    {"ops", "jit"},  # jit wraps capture around a function and copies its Tensor arguments in
    {"autograd.engine", "autograd"},
    {"nn", "optim", "checkpoint", "distributed"},  # distributed: collectives and DDP over ops and autograd
    {"training", "warmup"},
    {"cli", ""},  # "" is the package's own __init__, the public face over everything
]


def _layer(module: str) -> int:
    rel = module.removeprefix("hlx_vulkan").lstrip(".")
    for name in (rel, ".".join(rel.split(".")[:2]), rel.split(".")[0]):
        for rank, members in enumerate(LAYERS):
            if name in members:
                return rank
    raise AssertionError(f"module {module} is in no layer; add it to LAYERS")


def _imports(path: pathlib.Path):
    module = "hlx_vulkan." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("hlx_vulkan"):
                continue
            for alias in node.names:  # `from .. import errors` imports the module hlx_vulkan.errors
                sub = f"{target}.{alias.name}"
                is_module = (ROOT / pathlib.Path(*sub.split(".")[1:])).with_suffix(".py").exists() or \
                    (ROOT / pathlib.Path(*sub.split(".")[1:])).is_dir()
                yield module, sub if is_module else target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hlx_vulkan"):
                    yield module, alias.name


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        for module, target in _imports(path):
            if _layer(target) > _layer(module):
                upward.append(f"{module} imports {target}")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import():
    found = set(_imports(ROOT / "ops" / "tensor.py"))
    assert ("hlx_vulkan.ops.tensor", "hlx_vulkan.errors") in found
    assert ("hlx_vulkan.ops.tensor", "hlx_vulkan.runtime") in found
    assert _layer("hlx_vulkan.ops.matmul") > _layer("hlx_vulkan.memory.pool")
    assert _layer("hlx_vulkan.autograd.engine") > _layer("hlx_vulkan.ops.tensor") > _layer("hlx_vulkan.autograd.graph")
