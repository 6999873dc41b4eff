"""What a training job's source dir holds: the entry point and the breedops modules it needs.

The list is derived, not kept by hand: the `breedops.*` imports of the roots are followed
transitively (lazy imports inside functions too), read from the source with `ast` so that
nothing is imported here (no torch). A module the entry point starts importing ships with the
next job; a hand list would pass every local test and fail only on SageMaker.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "breedops"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
ENTRY_MODULE = "breedops.training.train"
# The training entry point, and the inference handler that its packaging copies into every
# model's code/ (read as a file, so no import names it).
ROOTS = (ENTRY_MODULE, "breedops.serving.inference")


def module_file(module: str) -> Path | None:
    """The source file of a breedops module or package; None when there is none."""
    relative = Path(*module.split(".")[1:])
    for candidate in (PACKAGE_ROOT / relative.with_suffix(".py"),
                      PACKAGE_ROOT / relative / "__init__.py"):
        if relative.parts and candidate.is_file():
            return candidate
    return None


def _imported(module: str, source: Path) -> set[str]:
    """The breedops modules that `source` (the file of `module`) imports, wherever it does."""
    names: set[str] = set()
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return {name for name in names
            if name.startswith(f"{PACKAGE}.") and module_file(name) is not None}


def _with_packages(module: str) -> list[str]:
    """`module` and every package above it (importing it runs their __init__ first)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def staged_modules(roots: tuple[str, ...] = ROOTS) -> list[str]:
    """Every breedops module the roots need, sorted (the top package is staged on its own)."""
    seen: set[str] = set()
    pending = [name for root in roots for name in _with_packages(root)]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        for imported in _imported(module, module_file(module)):
            pending.extend(_with_packages(imported))
    return sorted(seen)


def staged_files(roots: tuple[str, ...] = ROOTS) -> list[Path]:
    """The roots' modules as files relative to the breedops package."""
    return [module_file(module).relative_to(PACKAGE_ROOT) for module in staged_modules(roots)]
