"""Import modules of a PaddleDetection checkout (not installed) in an environment that lacks some of its
optional dependencies. Its package pulls in plotting, download and other tasks' augmentation modules at
start-up that the model code never uses: each one that is missing gets a stand-in. `six.moves` gets the
builtins SOLOv2's head takes from it. Used by the comparison, benchmark and golden-output tools'
PaddleDetection side."""
import importlib
import sys
import types
from pathlib import Path
from typing import Any, Union


class _Stub(types.ModuleType):
    """Stand-in for a module PaddleDetection imports but the model code never uses."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self.__name__}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


def _six_builtins() -> None:
    """A minimal `six` whose `moves` are Python 3's builtins, when the real one is missing."""
    try:
        import six  # noqa: F401
    except ImportError:
        moves = types.ModuleType("six.moves")
        moves.zip, moves.range, moves.map = zip, range, map  # type: ignore[attr-defined]
        six_module = types.ModuleType("six")
        six_module.moves = moves  # type: ignore[attr-defined]
        sys.modules.update({"six": six_module, "six.moves": moves})


def import_with_stubs(root: Union[str, Path], module: str) -> types.ModuleType:
    """Import `module` (e.g. "ppdet.core.workspace") from the PaddleDetection checkout `root`, with a
    stand-in for every missing third-party module its package imports."""
    sys.path.insert(0, str(root))
    _six_builtins()
    for _ in range(50):
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.startswith("ppdet"):
                raise
            for name in [m for m in sys.modules if m.startswith("ppdet")]:
                del sys.modules[name]
            parts = exc.name.split(".")
            for i in range(1, len(parts) + 1):
                sys.modules.setdefault(".".join(parts[:i]), _Stub(".".join(parts[:i])))
    raise RuntimeError("too many missing modules")


def import_ppdet(root: Union[str, Path]) -> None:
    """Import the `ppdet` package and its model code from `root` (see `import_with_stubs`)."""
    import_with_stubs(root, "ppdet.core.workspace")
    import_with_stubs(root, "ppdet.modeling")
