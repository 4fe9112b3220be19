"""Build RobustBench's zoo entries offline: their model libraries seen through a proxy that never downloads.

Moved out of :mod:`robustxai.models._zoo` unchanged (used only by its RobustBench family).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import types
from collections.abc import Iterator, Sequence

_PATCH_LOCK = threading.Lock()


class NoPretrained:
    """A model library seen through a proxy whose factories never fetch weights.

    RobustBench's zoo entries call e.g. ``pt_models.resnet50(pretrained=True)`` or ``timm.create_model(...,
    pretrained=True)``; with the proxy in place of the module they build the same architecture, random.
    """

    def __init__(self, lib: object) -> None:
        self._lib = lib

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._lib, name)
        if isinstance(attr, types.ModuleType):
            return NoPretrained(attr)
        if not callable(attr) or isinstance(attr, type):
            return attr

        @functools.wraps(attr)
        def build(*args: object, **kwargs: object) -> object:
            if "pretrained" in kwargs and kwargs["pretrained"]:
                kwargs["pretrained"] = False
                if "torchvision" in getattr(attr, "__module__", ""):
                    del kwargs["pretrained"]
            if kwargs.get("weights") is not None:
                kwargs["weights"] = None
            return attr(*args, **kwargs)

        return build


@contextlib.contextmanager
def no_pretrained(modules: Sequence[types.ModuleType]) -> Iterator[None]:
    """Put :class:`NoPretrained` proxies in place of ``timm`` and ``pt_models`` in ``modules`` meanwhile."""
    with _PATCH_LOCK:
        saved = []
        for mod in modules:
            for name in ("timm", "pt_models"):
                if name in vars(mod):
                    saved.append((mod, name, vars(mod)[name]))
                    setattr(mod, name, NoPretrained(vars(mod)[name]))
        try:
            yield
        finally:
            for mod, name, value in saved:
                setattr(mod, name, value)
