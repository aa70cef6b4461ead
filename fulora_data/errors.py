"""Typed errors. Each carries one sentence a user can act on; the CLI prints it and exits non-zero."""

from __future__ import annotations


def redact(text) -> str:
    """Hide credentials in URLs (``https://user:secret@host``, ``?token=...``) and Hub tokens (``hf_...``).

    The one redaction every message, report and printed value passes through (the CLI applies it to every
    error it prints), so an ``HF_ENDPOINT`` with credentials or a token never reaches a terminal or a log.
    """
    import re

    text = re.sub(r"(\w+://)[^/@\s]+@", r"\1***@", str(text))
    text = re.sub(r"([?&;](?:token|access_token|api_key|password|passwd|pwd|secret|key|sig)=)[^&\s'\"]+", r"\1***", text, flags=re.I)
    return re.sub(r"\bhf_[A-Za-z0-9]{6,}", "hf_***", text)


class FuloraError(Exception):
    """Base class of every error fulora reports to a user as one line."""


class ConfigError(FuloraError, ValueError):
    """A bad option, config name or option combination.

    A run config's check names the *field* it refuses (``resolution must be ...``) and passes it as
    ``field``; the CLI, which alone knows the flags, rewrites that leading field name as the command's flag
    (``--resolution must be ...``). See ``fulora_data.presets``.
    """

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.field = field


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
