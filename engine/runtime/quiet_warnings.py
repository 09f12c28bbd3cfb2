"""Silence the two third-party warnings every run printed although nobody can act on them; nothing else.

- Paddle's "No ccache found ..." (paddle.utils.cpp_extension, imported by `import paddle` itself and used
  to build engine/models/ops/roi_align_cpu.cc): the operator is built once per source and flags, and ccache
  would only speed up rebuilds.
- Paddle's "When training, we now always track global mean and variance." (paddle.nn.layer.norm, from every
  BatchNorm forward in training mode, shown again at each epoch): a note about Paddle's own behaviour.

Each filter matches the message text exactly (the ccache one its fixed first sentence), the category and the
module that warns, so any other warning, from Paddle or elsewhere, still shows. `install()` runs when the
`engine` package is imported, i.e. before this process imports Paddle through it.
"""
import re
import warnings
from typing import Tuple

# (message, exact or prefix, the module whose code calls warnings.warn)
KNOWN_HARMLESS: Tuple[Tuple[str, bool, str], ...] = (
    ("No ccache found. Please be aware that recompiling all source files may be required.", False,
     "paddle.utils.cpp_extension.extension_utils"),
    ("When training, we now always track global mean and variance.", True, "paddle.nn.layer.norm"),
)


def install() -> None:
    """Add one `ignore` filter per known harmless warning (idempotent: warnings drops duplicates)."""
    for message, exact, module in KNOWN_HARMLESS:
        pattern = re.escape(message) + (r"\Z" if exact else "")
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning,
                                module=re.escape(module) + r"\Z")
