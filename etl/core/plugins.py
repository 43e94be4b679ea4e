"""The one way user code comes in: factor modules (``factor_modules`` in config.toml), strategies
and models (``package.module:object`` on the command line or in an experiment spec).

Plugins are ordinary importable Python from the user's own folders (``factor_paths`` in
config.toml, an experiment spec's ``paths:``) or installed packages; nothing here forks or
copies them. Every failure is a :class:`~etl.core.errors.DeclarationError` that names the
reference, what went wrong and what to change.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Iterable
from types import ModuleType

from etl.core.errors import DeclarationError

#: ``package.module:object`` (the object part may be dotted: ``mod:Class.factory``)
REF_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][\w.]*$")


def add_paths(paths: Iterable[str]) -> None:
    """Put the user's plugin folders on ``sys.path`` (first, in the order given), once."""
    for path in reversed([str(p) for p in paths]):
        if path not in sys.path:
            sys.path.insert(0, path)


def import_module(name: str, what: str, paths: Iterable[str] = ()) -> ModuleType:
    """Import a user module by name; ``what`` names it in errors (``"factor module"``)."""
    if not isinstance(name, str) or not MODULE_RE.match(name):
        raise DeclarationError(f"{what} {name!r} is not a module name (e.g. 'mylab.factors')")
    add_paths(paths)
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DeclarationError(f"{what} {name!r} cannot be imported ({exc}); put its folder in factor_paths in config.toml "
                               "(or paths: in the experiment spec), or install it in this environment") from exc


def load_object(ref: str, what: str, paths: Iterable[str] = ()):
    """The object a ``package.module:object`` reference names."""
    if not isinstance(ref, str) or not REF_RE.match(ref):
        raise DeclarationError(f"{what} {ref!r} is not a reference of the form package.module:object "
                               "(e.g. 'mylab.strategies:Momentum')")
    module_name, _, attr = ref.partition(":")
    obj = import_module(module_name, f"{what} module", paths)
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(obj) if not n.startswith("_"))[:20]
            raise DeclarationError(f"{what} {ref!r}: {module_name} has no {attr!r} (it has: {', '.join(public) or 'nothing public'})")
        obj = getattr(obj, part)
    return obj


def source_sha256(obj) -> str | None:
    """sha256 of the source file that defines ``obj`` (a module, class, function or instance),
    the code version of a user plugin; None when there is no file (a builtin, the REPL)."""
    target = obj if inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    try:
        path = inspect.getsourcefile(target)
    except TypeError:
        return None
    if not path:
        return None
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()
