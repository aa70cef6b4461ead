"""fulora's dataset builders, one module per dataset, registered by name."""

from __future__ import annotations

from fulora_data.builders.african import AfricanBuilder
from fulora_data.builders.base import FuloraBuilder, FuloraConfig
from fulora_data.builders.hybrid import HybridBuilder
from fulora_data.builders.spanish import SpanishBuilder
from fulora_data.builders.synthetic import SyntheticBuilder
from fulora_data.errors import OptionValueError

BUILDERS: dict[str, type[FuloraBuilder]] = {
    "spanish": SpanishBuilder,
    "african": AfricanBuilder,
    "synthetic": SyntheticBuilder,
    "hybrid": HybridBuilder,
}


def get_builder_class(name: str) -> type[FuloraBuilder]:
    """Return the builder class registered under ``name``.

    Raises:
        ConfigError: If no builder has that name.
    """
    try:
        return BUILDERS[name]
    except KeyError:
        raise OptionValueError(
            f"unknown dataset {name!r}; choose one of {', '.join(sorted(BUILDERS))}"
        ) from None


__all__ = ["BUILDERS", "FuloraBuilder", "FuloraConfig", "get_builder_class"]
