"""The README's "API at a glance" names every public function, module, optimizer and data
class of the package, so a new name cannot ship without a row."""
import re
from pathlib import Path

import tricks_ext
from tricks_ext import data, functional, nn, optim, recipe

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _table() -> str:
    start = README.index("## API at a glance")
    return README[start:README.index("\n## ", start + 1)]


def test_every_public_name_has_a_row():
    table = _table()
    names = set(re.findall(r"`((?:F|nn|optim|data|recipe)\.\w+|\w+)`", table))
    public = {f"F.{n}" for n in functional.__all__} | {f"nn.{n}" for n in nn.__all__}
    public |= {f"optim.{n}" for n in optim.__all__ if n != "TricksOptimizer"}  # the base class, for subclasses
    public |= {f"data.{n}" for n in data.__all__}
    public |= {f"recipe.{n}" for n in recipe.__all__}
    public |= {"patch", "unpatch", "patch_timm_create_model", "set_backend", "use_backend", "get_backend"}
    assert all(hasattr(optim, n.split(".")[1]) for n in public if n.startswith("optim."))
    assert all(hasattr(tricks_ext, n) for n in public if "." not in n)
    missing = sorted(public - names)
    assert not missing, f"public names without a row in the README's API table: {missing}"
