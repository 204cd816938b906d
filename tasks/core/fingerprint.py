"""The code fingerprint of a stage: a hash of every project module its entry module imports.

Contract: :func:`fingerprint` starts from a stage's core module (e.g. ``tasks.core.stages.filter``)
and walks, with :mod:`ast` and without importing anything, the modules it depends on inside the
project packages (:data:`PROJECT_PACKAGES`), transitively:

* every ``import`` / ``from ... import`` node anywhere in a module (top level, inside functions:
  lazy imports count), relative imports resolved against the module's package;
* ``from pkg import name`` where ``name`` is a submodule of ``pkg`` adds that submodule;
* the ``__init__.py`` of every package on a module's dotted path (Python runs them on import);
* ``importlib.import_module("literal")`` / ``__import__("literal")``; such a call with a computed
  name cannot be followed and fails with :class:`FingerprintError` naming the file and line;
* a string literal that names a ``.py`` file beside the module (source shipped as text, e.g. the
  sandbox's ``envelopes`` sends ``server.py``/``runner.py`` into the sandbox) adds that file.

Imports under ``if TYPE_CHECKING:`` never run and are skipped: stages import their config
classes that way, because a config enters a stage's content address through its dumped values,
not through ``config.py``'s source. :attr:`Fingerprint.digest` hashes the repo-relative path and
the *code* of each file, in sorted path order: its syntax tree (``ast.dump``, no line numbers)
with every docstring removed, so a comment, a docstring or a reformatting changes nothing, while
any statement edit does. It is the stage's code part of its content address
(:func:`tasks.core.manifest.plan_stage`).

Model: Prefect's ``TASK_SOURCE`` cache policy hashes the source of the task function alone; this
follows everything the stage's code imports, so a changed helper is a cache miss too.

Limits: dependency graphs and digests are cached per process (``lru_cache``): a process keeps
the fingerprint of the source it first read, which is the code it imported. Data files other than
``.py`` sources (profiles, bundled Parquet) are not code and are not hashed; what they change
reaches a stage through its config or its upstream manifests. Third-party packages and the
Python version are not part of the fingerprint. Code that reads a docstring at run time
(``__doc__``) would change behaviour without changing its fingerprint; no stage module does.
The AST dump's format may differ between Python versions: a run directory moved to another
Python re-keys once.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType

PROJECT_PACKAGES = ("tasks", "flows")
REPO_ROOT = Path(__file__).resolve().parents[2]
_DYNAMIC_IMPORTS = {"import_module", "__import__"}


class FingerprintError(ValueError):
    """A module the walk cannot resolve or follow; the message names the file and the fix."""


@dataclass(frozen=True)
class Fingerprint:
    entry: str
    files: tuple[str, ...]  # repo-relative POSIX paths, sorted
    digest: str


def fingerprint(entry: str | ModuleType, root: Path | str | None = None) -> Fingerprint:
    """The fingerprint of ``entry`` (a dotted module name or a module) over the tree at ``root``."""
    name = entry.__name__ if isinstance(entry, ModuleType) else entry
    return _fingerprint(name, str(Path(root or REPO_ROOT).resolve()))


@lru_cache(maxsize=256)
def _fingerprint(entry: str, root: str) -> Fingerprint:
    base = Path(root)
    if _module_file(base, entry) is None:
        raise FingerprintError(
            f"stage entry module {entry!r} has no source file under {root}; "
            f"pass a module of {' or '.join(PROJECT_PACKAGES)} (e.g. 'tasks.core.stages.filter')"
        )
    files = sorted({_rel(base, _module_file(base, m)) for m in _closure(entry, root)})
    digest = hashlib.sha256()
    for rel in files:
        data = code_of(base / rel)
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    return Fingerprint(entry=entry, files=tuple(files), digest=digest.hexdigest()[:16])


def code_of(path: Path) -> bytes:
    """What of a source file is code: its syntax tree without docstrings, positions or comments."""
    return _code(path.read_bytes(), str(path))


@lru_cache(maxsize=1024)
def _code(source: bytes, filename: str) -> bytes:
    tree = ast.parse(source, filename=filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False).encode()


def _closure(entry: str, root: str) -> set[str]:
    seen, todo = set(), [entry]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_dependencies(module, root))
    return seen


def _rel(root: Path, path: Path | None) -> str:
    assert path is not None  # every module in a closure was resolved to a file
    return path.relative_to(root).as_posix()


def _module_file(root: Path, module: str) -> Path | None:
    """``a/b/c.py`` or ``a/b/c/__init__.py`` for ``a.b.c`` under ``root``, if either exists."""
    parts = module.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return None
    package = root.joinpath(*parts, "__init__.py")
    if package.is_file():
        return package
    plain = root.joinpath(*parts[:-1], parts[-1] + ".py")
    return plain if plain.is_file() else None


def _parents(module: str) -> Iterator[str]:
    parts = module.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


@lru_cache(maxsize=4096)
def _dependencies(module: str, root: str) -> tuple[str, ...]:
    """Project modules that importing ``module`` runs: its packages' ``__init__`` and its imports."""
    base = Path(root)
    path = _module_file(base, module)
    if path is None:
        raise FingerprintError(f"project module {module!r} has no source file under {root}")
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(path.read_bytes(), filename=str(path))
    found = set(_parents(module))
    for name, line in _imported_names(tree, package, path, base):
        if name.split(".")[0] not in PROJECT_PACKAGES:
            continue
        if _module_file(base, name) is None:
            raise FingerprintError(
                f"{path}:{line}: imports {name!r}, which is no module under {root}; fix the import"
            )
        found.add(name)
        found.update(_parents(name))
    found.update(f"{package}.{stem}" for stem in _sibling_sources(tree, path))
    found.discard(module)
    return tuple(sorted(found))


def _imported_names(tree: ast.AST, package: str, path: Path, root: Path) -> Iterator[tuple[str, int]]:
    """Dotted names of the modules ``tree`` imports (outside ``if TYPE_CHECKING:`` blocks)."""
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package, path, node.lineno)
            yield base, node.lineno
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if alias.name != "*" and _module_file(root, candidate) is not None:
                    yield candidate, node.lineno
        elif isinstance(node, ast.Call) and _call_name(node.func) in _DYNAMIC_IMPORTS:
            yield _dynamic_target(node, package, path), node.lineno


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def _dynamic_target(call: ast.Call, package: str, path: Path) -> str:
    arg = call.args[0] if call.args else None
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        raise FingerprintError(
            f"{path}:{call.lineno}: imports a module by a computed name, which the code fingerprint "
            "cannot follow; import the module statically (a plain import statement) instead"
        )
    name = arg.value
    level = len(name) - len(name.lstrip("."))
    return _resolve(name[level:], level, package, path, call.lineno) if level else name


def _resolve(module: str, level: int, package: str, path: Path, line: int) -> str:
    if level == 0:
        return module
    parts = package.split(".")
    if level > len(parts):
        raise FingerprintError(f"{path}:{line}: relative import beyond the top-level package")
    base = ".".join(parts[: len(parts) - level + 1])
    return f"{base}.{module}" if module else base


def _sibling_sources(tree: ast.AST, path: Path) -> set[str]:
    """Stems of ``.py`` files beside ``path`` that the module names in a string literal."""
    stems = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.endswith(".py") and "/" not in text and text != path.name:
                if (path.parent / text).is_file() and text != "__init__.py":
                    stems.add(text[:-3])
    return stems
