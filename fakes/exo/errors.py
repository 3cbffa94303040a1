"""The one root of exo-edge's exceptions, and the error for bad configuration files."""

from __future__ import annotations


class ExoEdgeError(Exception):
    """Root of every error exo-edge raises on purpose."""


class InternalError(ExoEdgeError, RuntimeError):
    """A state the code promises never to reach (an edge's own bug): the adapters answer 451 4.3.0
    and record it, and the run that owns the edge reports ERROR."""


class UsageError(ExoEdgeError, ValueError):
    """The caller asked for something that cannot be: an address that is not one, a port in use."""


class ConfigError(ExoEdgeError):
    """A tenant or scenario file that cannot be used, naming where and what.

    ``str(error)`` reads ``file:line: key.path=value: message`` so that an editor can jump to it.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "<string>",
        line: int | None = None,
        path: str = "",
        value: object = None,
        has_value: bool = False,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.path = path
        self.value = value
        self.has_value = has_value
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        what = self.path
        if self.has_value:
            shown = _shown(self.path, self.value)
            what = f"{what}={shown}" if what else shown
        return f"{where}: {what}: {self.message}" if what else f"{where}: {self.message}"


# a key naming any of these holds a secret (a mistyped one too: passwd, pwd), unless it names a lifetime
SECRET_KEYS = ("passw", "pwd", "pass", "secret", "token", "key", "credential")
NOT_SECRET = ("lifetime",)
MAX_SHOWN = 80


def _shown(path: str, value: object) -> str:
    """The offending value as an error shows it: cut short, and never a secret."""
    last = path.rsplit(".", 1)[-1].lower()
    if any(word in last for word in SECRET_KEYS) and not any(word in last for word in NOT_SECRET):
        return "'********'"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


class ConfigErrors(ConfigError):
    """Several problems found in one file; each is a ``ConfigError``."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(
            first.message,
            source=first.source,
            line=first.line,
            path=first.path,
            value=first.value,
            has_value=first.has_value,
        )

    def __str__(self) -> str:
        return "\n".join(ConfigError.__str__(e) for e in self.errors)
