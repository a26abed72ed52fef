"""The front end in one call: file or source text -> verified IR graph."""
from __future__ import annotations

from pathlib import Path

from ..errors import Loc, PnetError
from .elaborate import Elaborated, Elaborator
from .loader import Loader
from .parser import parse


def load_source(source: str, file: str = "<string>", model: str | None = None, overrides: dict | None = None) -> Elaborated:
    loader = Loader()
    module = parse(source, file)
    for imp in module.imports:
        loader.imported(module, imp)
    el = Elaborator(loader)
    el._main_source = (file, source)
    try:
        result = el.elaborate_model(module, model, overrides)
    except RecursionError:
        raise PnetError("program nests too deeply to elaborate (an expression or call chain thousands deep)",
                        Loc(file, 1, 1)) from None
    except OverflowError as e:  # outside any statement (a hyperparameter default): the file is the place
        raise PnetError(f"a compile-time number is too large ({e})", Loc(file, 1, 1)) from None
    from ..passes.verify import verify
    verify(result.graph)
    return result


def load_file(path: str | Path, model: str | None = None, overrides: dict | None = None) -> Elaborated:
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PnetError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PnetError(f"cannot read {path}: {e}") from None
    return load_source(source, str(path), model, overrides)
