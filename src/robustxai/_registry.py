"""A small name → factory registry shared by every plug-in layer.

Attacks, explainers, models and metrics are created by name with their hyper-parameters as keywords. The
registry checks both the name and the keywords up front, so that a typo fails with a message listing what
exists instead of a ``TypeError`` deep inside a constructor.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

from robustxai._errors import RobustXAIError, UnknownNameError

T = TypeVar("T")

#: A hyper-parameter as a plug-in's ``params()`` reports it: a JSON-friendly scalar or a tuple of them.
ParamValue = None | bool | int | float | str | tuple[int | float | str, ...]


def constructor_keywords(cls: type) -> list[str]:
    """The keyword parameters of ``cls``'s constructor, in order (not ``self``, ``*args``, ``**kwargs``)."""
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]  # the class's own __init__, not object's
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in sig.parameters.values() if p.kind in kinds and p.name != "self"]


def declared_params(plugin: object, fixed: tuple[str, ...] = ()) -> dict[str, ParamValue]:
    """A plug-in's hyper-parameters: its constructor's keywords and the ones its class fixes.

    Each is read back from the attribute of the same name (the validated, normalised value), so the
    typed constructor signature is the plug-in's config: ``params()`` holds exactly what it was created
    with — never a per-call result such as a diagnostic, which belongs in the call's result — and
    ``type(p)(**p.params())`` rebuilds it. Reports and cache keys take this dict.

    Args:
        plugin: An attack or explainer.
        fixed: Hyper-parameters the class sets itself rather than taking as keywords (BIM's
            ``random_start=False``), reported so that two methods differing only there are told apart.
    """
    out: dict[str, ParamValue] = {}
    for name in (*constructor_keywords(type(plugin)), *fixed):
        value = getattr(plugin, name)
        if not isinstance(value, None | bool | int | float | str | tuple):
            raise RobustXAIError(f"{type(plugin).__name__}.{name} is not a plain hyper-parameter: {value!r}")
        out[name] = value
    return out


class Registry(Generic[T]):
    """Maps names to factories (classes or functions) of one kind of plug-in.

    Args:
        kind: What the registry holds, used in error messages ("attack", "explainer", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers a factory under ``name``."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise RobustXAIError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plug-in registered for a test, say); unknown names are an error."""
        self.get(name)
        del self._factories[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def get(self, name: str) -> Callable[..., T]:
        """Return the factory for ``name`` or raise an error that lists the known names."""
        try:
            return self._factories[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), self.names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}"
            ) from None

    def parameters(self, name: str) -> list[str]:
        """Keyword parameters that the factory for ``name`` accepts."""
        sig = inspect.signature(self.get(name))
        return [
            p.name
            for p in sig.parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
        ]

    def create(self, name: str, **kwargs: object) -> T:
        """Instantiate ``name`` with ``kwargs``, rejecting keywords the factory does not take."""
        factory = self.get(name)
        sig = inspect.signature(factory)
        takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        if not takes_any:
            allowed = self.parameters(name)
            unknown = sorted(set(kwargs) - set(allowed))
            if unknown:
                raise UnknownNameError(
                    f"{self.kind} {name!r} got unknown keyword(s) {', '.join(unknown)}; "
                    f"it accepts: {', '.join(allowed) or '(none)'}"
                )
        return factory(**kwargs)
