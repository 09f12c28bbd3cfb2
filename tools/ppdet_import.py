"""Import PaddleDetection (a checkout, not installed) in an environment that lacks some of its optional
dependencies: the modules it imports at start-up for plotting, downloads and other tasks' augmentations get
stand-ins, and `six.moves` gets the builtins SOLOv2's head takes from it. Used by the comparison and
benchmark tools' PaddleDetection side."""
import importlib
import sys
import types

OPTIONAL = ("requests", "imgaug", "imgaug.augmentables", "imgaug.augmentables.lines",
            "imgaug.augmentables.segmaps", "imgaug.augmenters", "matplotlib", "matplotlib.pyplot", "sklearn",
            "mpl_toolkits", "mpl_toolkits.mplot3d", "pandas")


class _Absent(types.ModuleType):
    """Stand-in for a module PaddleDetection imports but the model code never uses."""

    def __getattr__(self, name: str) -> "_Absent":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Absent(f"{self.__name__}.{name}")

    def __call__(self, *args: object, **kwargs: object) -> "_Absent":
        return self


def import_ppdet(ppdet_root: str) -> None:
    """Put `ppdet_root` on sys.path and import ppdet, with stand-ins for missing optional modules."""
    sys.path.insert(0, ppdet_root)
    for name in OPTIONAL:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = _Absent(name)
    try:
        import six  # noqa: F401
    except ImportError:
        moves = types.ModuleType("six.moves")
        moves.zip, moves.range, moves.map = zip, range, map  # type: ignore[attr-defined]
        six_module = types.ModuleType("six")
        six_module.moves = moves  # type: ignore[attr-defined]
        sys.modules.update({"six": six_module, "six.moves": moves})
    importlib.import_module("ppdet")
