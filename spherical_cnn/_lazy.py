"""Package attributes imported on first use (PEP 562), shared by both packages.

``import spherical_cnn`` stays light: a public name or submodule is imported only
when it is first read, and ``dir()`` lists them all the same.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(package: str, exports: dict[str, str], submodules: tuple[str, ...],
                    namespace: dict[str, Any], moved: dict[str, str] | None = None,
                    ) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a public name to the
    submodule defining it, ``submodules`` are reachable as attributes; a resolved name is
    cached in ``namespace`` (the package's globals). ``moved`` maps an old submodule name
    (one of ``submodules``) to the module that replaced it (relative to ``package``): the
    attribute is that module, imported on first use like the others."""
    moved = dict(moved or {})

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f".{moved.get(name, name)}", package)
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list:
        return sorted(set(namespace) | set(exports) | set(submodules))

    return __getattr__, __dir__
