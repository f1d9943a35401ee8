"""The one TorchScript rule of tricks_ext's modules."""
from __future__ import annotations


class NotScriptable:
    """Mixin: ``torch.jit.script`` of the module (or of a model holding it) raises one clear
    error. The forward picks a backend in Python at each call and runs torch.library ops with
    Python autograd, which TorchScript cannot compile; left alone, scripting failed deep inside
    a helper ("Unknown type name 'object'")."""

    def __prepare_scriptable__(self) -> "NotScriptable":
        raise RuntimeError(
            f"torch.jit.script does not support {type(self).__module__}.{type(self).__qualname__}: its forward "
            "chooses a backend in Python and calls torch.library ops. Use torch.compile or torch.export instead; "
            "to script a patched timm model, tricks_ext.unpatch(model) first gives it timm's own layers back, "
            "and tricks_ext.nn.fold_weight_standardization(model) turns weight-standardized convolutions into "
            "plain Conv2d")
