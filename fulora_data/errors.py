"""Typed errors. Each carries one sentence a user can act on; the CLI prints it and exits non-zero."""

from __future__ import annotations


class FuloraError(Exception):
    """Base class of every error fulora reports to a user as one line."""


class ConfigError(FuloraError, ValueError):
    """A bad option, config name or option combination."""


class OptionValueError(ConfigError):
    """A bad option value (or combination of values), refused before any work: the CLI exits 2, as click
    does for its own parameter errors."""


class SourceNotFoundError(FuloraError, FileNotFoundError):
    """A dataset's archive or folder is not where it was looked for, and downloading is not possible."""


class ArchiveError(FuloraError):
    """An archive is corrupt, truncated or of an unknown kind."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would be written outside the extraction folder."""


class ChecksumError(FuloraError):
    """A file's checksum differs from the published one."""


class DataError(FuloraError, ValueError):
    """The content of a dataset is wrong: a missing column, image, plane or an undecodable file."""


class MissingExtraError(FuloraError, ImportError):
    """An optional dependency is not installed."""


def install_hint(extra: str) -> str:
    """How to install the fulora extra ``extra``: from a clone of the repository, until fulora is on PyPI."""
    return f"pip install -e '.[{extra}]' in a clone of fulora's repository"


def require(module: str, extra: str):
    """Import an optional dependency or fail with the extra that installs it.

    Args:
        module: The module to import, e.g. ``"diffusers"``.
        extra: The fulora extra that provides it, e.g. ``"train"``.

    Returns:
        The imported module.

    Raises:
        MissingExtraError: If the module is not installed.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f"{module} is not installed; install it with: {install_hint(extra)}") from err
