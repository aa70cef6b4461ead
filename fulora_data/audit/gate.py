"""What ``fulora data audit --fail-on`` fails on: the audit's findings as a CI gate.

Each kind names counts of an audit result (``fulora_data.audit.audit_dataset``); a kind fails when any of
its counts is above zero.
"""

from __future__ import annotations

from typing import Any

from fulora_data.errors import OptionValueError

# kind -> (the audit's count, how the finding reads)
FAIL_ON: dict[str, tuple[tuple[str, str], ...]] = {
    "duplicates": (
        ("exact_duplicate_pairs", "exact duplicate pairs"),
        ("near_duplicate_pairs", "near duplicate pairs"),
    ),
    "leakage": (("cross_split_duplicate_pairs", "duplicate pairs across splits"),),
    "label-conflicts": (("label_disagreement_pairs", "duplicate pairs whose labels disagree"),),
    "memorisation": (("memorised", "images memorised from the --against set"),),
}


def failed_checks(result: dict[str, Any], kinds: list[str] | tuple[str, ...]) -> list[str]:
    """The findings of ``result`` among ``kinds``, one phrase each (``"3 exact duplicate pairs"``).

    Args:
        result: What ``audit_dataset`` returned (``audit`` and, with ``against``, ``memorisation``).
        kinds: Names from ``FAIL_ON``.

    Returns:
        The findings, empty when the audit passes.

    Raises:
        OptionValueError: For an unknown kind, or ``memorisation`` on an audit run without ``against``.
    """
    found = []
    for kind in kinds:
        if kind not in FAIL_ON:
            raise OptionValueError(f"--fail-on must be one of {', '.join(FAIL_ON)}, got {kind!r}")
        counts = result.get("memorisation") if kind == "memorisation" else result["audit"]
        if counts is None:
            raise OptionValueError(
                "--fail-on memorisation needs --against (the set to check for memorisation)"
            )
        for key, words in FAIL_ON[kind]:
            if counts.get(key, 0) > 0:
                found.append(f"{counts[key]} {words}")
    return found
