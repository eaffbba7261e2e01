"""Errors raised on bad input: each says what is wrong and what to do."""


class CagnetError(Exception):
    """Base class of every error the package raises on purpose."""


class ConfigError(CagnetError, ValueError):
    """A preset, method, class name or option that does not exist or does not fit."""


class DataError(CagnetError):
    """A dataset folder, file or label that is missing, corrupt or out of range."""
