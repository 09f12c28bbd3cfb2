"""Closest-key suggestions for config error messages ("Did you mean Train.epochs_iters?")."""
import difflib
from typing import Iterable, List


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> List[str]:
    """Up to `n` candidates closest to `word` (difflib ratio >= 0.6, case-insensitive), best first."""
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def did_you_mean(word: str, candidates: Iterable[str], prefix: str = "") -> str:
    """' Did you mean A or B?' (each prefixed with `prefix`), or '' when nothing is close."""
    hits = [prefix + h for h in close_matches(word, candidates)]
    if not hits:
        return ""
    if len(hits) == 1:
        return f" Did you mean {hits[0]}?"
    return " Did you mean " + ", ".join(hits[:-1]) + f" or {hits[-1]}?"


def model_name_hint(name: str) -> str:
    """' Did you mean <closest model names>?' for an unknown Global.model, else the list of known models."""
    from engine.config.model_names import MODEL_FAMILIES

    return did_you_mean(str(name), MODEL_FAMILIES) or " Known models: " + ", ".join(MODEL_FAMILIES) + "."
