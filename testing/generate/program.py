"""`Program`: one generated program -- its .pnet source and how to run it (dims, `--set` overrides, seed, file
name, special input values) -- and its text form, a standalone .pnet file whose `#` header records all that."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field


@dataclass
class Program:
    source: str
    dims: dict = field(default_factory=dict)        # runtime sizes of the symbolic dims
    overrides: dict = field(default_factory=dict)   # hyperparameter overrides, as `--set` strings
    seed: int = 0                                   # seed of the random inputs and params
    ops: tuple = ()                                 # registry ops the generator applied
    path: str = "<fuzz>"                            # the file name it is compiled under (FILE_PATHS)
    specials: bool = False                          # float inputs hold NaN/inf/+-0/huge/tiny values (fuzz.py)

    def load_overrides(self) -> dict:
        return {**self.overrides, **self.dims}

    def to_text(self, note: str = "") -> str:
        """The program as a standalone .pnet file whose header records how to run it."""
        head = []
        for line in note.strip().splitlines():
            head.append("# " + line if line else "#")
        head.append(("# dims: " + " ".join(f"{k}={v}" for k, v in self.dims.items())).rstrip())
        head.append(("# set: " + " ".join(f"{k}={v}" for k, v in self.overrides.items())).rstrip())
        head.append(f"# seed: {self.seed}")
        if self.path != "<fuzz>":
            head.append(f"# path: {ascii(self.path)}")   # a Python literal: the path may hold newlines
        if self.specials:
            head.append("# specials: yes")
        return "\n".join(head) + "\n" + self.source

    def __repr__(self) -> str:   # hypothesis prints failing examples with this: paste it into a .pnet file
        return "Program.from_text('''\n" + self.to_text().replace("\\", "\\\\") + "''')"

    @classmethod
    def from_text(cls, text: str) -> "Program":
        dims, over, seed = {}, {}, 0
        for line in text.splitlines():
            m = re.match(r"^#\s*(dims|set|seed):(.*)$", line)
            if not m:
                continue
            key, rest = m.group(1), m.group(2).split()
            if key == "seed":
                seed = int(rest[0]) if rest else 0
            for part in rest if key != "seed" else []:
                k, v = part.split("=", 1)
                (dims if key == "dims" else over)[k] = int(v) if key == "dims" else v
        m = re.search(r"^#\s*path:\s*(.*)$", text, re.M)
        path = ast.literal_eval(m.group(1)) if m else "<fuzz>"
        specials = re.search(r"^#\s*specials:\s*yes\s*$", text, re.M) is not None
        return cls(text, dims, over, seed, path=path, specials=specials)
