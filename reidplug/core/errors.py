"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad config, unknown component, missing file."""

    exit_code = 2


class ConfigError(UserError):
    """A problem at a key of a config file: `file: KEY.PATH: reason`."""

    def __init__(self, reason: str, *, file: str | None = None, key: str | None = None):
        self.reason = reason
        self.file = file
        self.key = key
        super().__init__(self._format())

    def _format(self) -> str:
        where = [p for p in (self.file, self.key) if p]
        return ": ".join([*where, self.reason])


class UnknownComponentError(ConfigError):
    """A name that no plugin registered."""


class PluginError(UserError):
    """A plugin that cannot be used (duplicate names, misspelled hooks)."""


class DataError(UserError):
    """A dataset folder or image that cannot be read."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated or corrupt."""
