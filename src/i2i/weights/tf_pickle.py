"""Reading the official dnnlib/tflib network pickles without TensorFlow.

The official CoModGAN files are pickles of `(G, D, Gs)`, three `dnnlib.tflib.network.Network`
objects whose state is a plain dict: name, static_kwargs, components (sub-networks, themselves
Networks), the build function's source and name, and `variables`, a list of (local name, numpy
array). Unpickling them normally would import TensorFlow and execute the build code. Here a
restricted unpickler resolves the network class to a stand-in that only keeps that state, lets
numpy arrays load as usual, and refuses every other class by name before anything runs: a pickle
can call any importable function, so nothing outside this short list is ever looked up.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np


class TFNetwork:
    """Stand-in for `dnnlib.tflib.network.Network`: the pickled state, no graph."""

    def __setstate__(self, state: dict) -> None:
        if not isinstance(state, dict) or "variables" not in state:
            raise pickle.UnpicklingError(
                "a dnnlib.tflib.network.Network whose state has no 'variables' list"
            )
        self.state = state

    @property
    def name(self) -> str:
        return str(self.state.get("name", "?"))

    @property
    def static_kwargs(self) -> dict:
        return dict(self.state.get("static_kwargs") or {})

    @property
    def components(self) -> dict[str, TFNetwork]:
        return dict(self.state.get("components") or {})

    @property
    def own_vars(self) -> dict[str, np.ndarray]:
        """The network's own variables by local name (sub-networks excluded)."""
        return {str(name): np.asarray(value) for name, value in self.state["variables"]}

    def variables(self) -> dict[str, np.ndarray]:
        """Own variables, then every component's as `<component name>/<local name>`, the
        naming of tflib's `Network.vars`."""
        out = self.own_vars
        for comp in self.components.values():
            out.update((f"{comp.name}/{k}", v) for k, v in comp.variables().items())
        return out

    def __repr__(self) -> str:
        return f"TFNetwork({self.name!r}, {len(self.variables())} variables)"


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict` (a dict with attribute access)."""


def _numpy_core(name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core; the official files were written by numpy 1.
    from numpy._core import multiarray

    return getattr(multiarray, name)


ALLOWED: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): TFNetwork,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_core("_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_core("_reconstruct"),
    ("numpy.core.multiarray", "scalar"): _numpy_core("scalar"),
    ("numpy._core.multiarray", "scalar"): _numpy_core("scalar"),
}


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, 'latin1').
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


ALLOWED[("_codecs", "encode")] = _codecs_encode


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"{self.source}: the pickle refers to {module}.{name}, which a dnnlib/tflib "
                "network pickle never contains; refusing to load it (nothing was executed). "
                "Only official CoModGAN/StyleGAN2 TensorFlow pickles can be read here."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"{self.source}: persistent id {pid!r} is not allowed")


def loads(data: bytes, source: str = "<bytes>") -> Any:
    return RestrictedUnpickler(io.BytesIO(data), source).load()


def load(path: str | Path) -> Any:
    """Unpickle a dnnlib/tflib pickle: Networks become `TFNetwork`s, arrays stay numpy."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, str(path)).load()
        except (EOFError, pickle.UnpicklingError) as err:
            if str(err).startswith(str(path)):  # ours: it names the file and the reason
                raise
            raise pickle.UnpicklingError(
                f"{path}: the pickle is damaged or ends early ({err or 'end of file'}); "
                "download it again"
            ) from None


def load_networks(path: str | Path) -> dict[str, TFNetwork]:
    """The official `(G, D, Gs)` tuple as {'G', 'D', 'Gs'}, or a lone network under its name."""
    obj = load(path)
    if isinstance(obj, TFNetwork):
        return {obj.name: obj}
    if isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetwork) for n in obj):
        return dict(zip(("G", "D", "Gs"), obj, strict=True))
    raise pickle.UnpicklingError(
        f"{path}: expected the official (G, D, Gs) tuple of tflib networks, found "
        f"{type(obj).__name__}{f' of {len(obj)}' if isinstance(obj, tuple) else ''}"
    )
