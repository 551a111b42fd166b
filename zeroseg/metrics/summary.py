"""Seen / unseen / harmonic-mean summaries shared by the three evaluators.

Convention (documented in the README): a class enters a mean only where the task's own
rule says it is present (panoptic: TP+FP+FN > 0; instance: it has ground truth; semantic:
it has ground-truth pixels). A split with no such class has its mean reported as absent
(``None``, JSON ``null``), never as 0, and the harmonic mean is then absent too. When both
means exist, HM = 2SU/(S+U), and 0 when S+U = 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def mean_or_none(values: Iterable[float]) -> float | None:
    vals = list(values)
    return sum(vals) / len(vals) if vals else None


def harmonic_mean(seen: float | None, unseen: float | None) -> float | None:
    if seen is None or unseen is None:
        return None
    if seen + unseen == 0:
        return 0.0
    return 2 * seen * unseen / (seen + unseen)


def split_summary(
    name: str,
    per_class: Mapping[int, float],
    unseen_ids: set[int] | None,
) -> dict[str, float | None]:
    """``per_class`` holds only the classes that count. Returns ``name``, and with a split
    ``name_seen``, ``name_unseen``, ``name_hm``."""
    out: dict[str, float | None] = {name: mean_or_none(per_class.values())}
    if unseen_ids is not None:
        s = mean_or_none(v for c, v in per_class.items() if c not in unseen_ids)
        u = mean_or_none(v for c, v in per_class.items() if c in unseen_ids)
        out[f"{name}_seen"], out[f"{name}_unseen"], out[f"{name}_hm"] = s, u, harmonic_mean(s, u)
    return out
