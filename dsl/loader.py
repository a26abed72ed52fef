"""Finding and loading .pnet modules: `import nn.core` looks beside the importing file, then in the stdlib."""
from __future__ import annotations

from pathlib import Path

from ..errors import PnetError, escape_text
from . import ast as A
from .parser import parse_file
from .suggest import did_you_mean

STDLIB = Path(__file__).resolve().parent.parent / "stdlib"


def resolve_import(imp: A.Import, importer: str) -> Path:
    here = Path(importer).resolve().parent if importer and not importer.startswith("<") else Path.cwd()
    if imp.is_file:
        _check_pnet_suffix(Path(imp.path), imp)
        candidates = [here / imp.path]
    else:
        rel = Path(*imp.path.split(".")).with_suffix(".pnet")
        candidates = [here / rel, STDLIB / rel]
    for c in candidates:
        try:
            if c.is_file():
                return _check_pnet_suffix(c.resolve(), imp)   # also through a symlink
        except OSError:  # a name the file system refuses (too long, ...): not a module there
            continue
    hint = "" if imp.is_file else did_you_mean(imp.path, _modules_in(here) + _modules_in(STDLIB))
    raise PnetError(f"cannot find module '{imp.path}'{hint} (looked in {', '.join(str(c.parent) for c in candidates)})",
                    imp.loc)


def _modules_in(root: Path) -> list[str]:
    """The dotted names `import` finds under `root` (for "did you mean"), two levels deep as the stdlib is."""
    try:
        files = list(root.glob("*.pnet")) + list(root.glob("*/*.pnet"))
    except OSError:
        return []
    return [".".join(f.relative_to(root).with_suffix("").parts) for f in files]


def _check_pnet_suffix(path: Path, imp: A.Import) -> Path:
    """Imports read .pnet files only: anything else (`import "../../etc/passwd"`) is refused before it is opened,
    so no line of a foreign file is ever parsed or echoed in an error."""
    if path.suffix != ".pnet":
        shown = escape_text(imp.path, quotes='"')
        raise PnetError(f'import "{shown}": imports name .pnet files only', imp.loc)
    return path


class Loader:
    """Parses each file once; detects import cycles."""

    def __init__(self):
        self.modules: dict[Path, A.Module] = {}
        self._loading: list[Path] = []
        self._imported: dict[tuple, A.Module] = {}   # (importer file, import path, is_file) -> the module

    def load(self, path: Path, via: A.Import | None = None) -> A.Module:
        path = Path(path).resolve()
        if path in self._loading:
            chain = " -> ".join(p.name for p in self._loading[self._loading.index(path):] + [path])
            raise PnetError(f"import cycle: {chain}", via.loc if via else None)
        if path not in self.modules:
            self._loading.append(path)
            try:
                module = parse_file(path)
                for imp in module.imports:
                    self.load(resolve_import(imp, module.file), imp)
                self.modules[path] = module
            finally:
                self._loading.pop()
        return self.modules[path]

    def imported(self, module: A.Module, imp: A.Import) -> A.Module:
        # memoised: elaboration asks this for every global name it looks up (thousands of times for a
        # 32-layer model), and resolving stats and realpaths the candidate files each time
        key = (module.file, imp.path, imp.is_file)
        found = self._imported.get(key)
        if found is None:
            found = self._imported[key] = self.load(resolve_import(imp, module.file), imp)
        return found
