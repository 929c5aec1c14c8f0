"""Model families. Importing this package registers every builder.

Each family module holds its table of rows, registers them with
`registry.register_rows` and lists its public builders (the generic ones and
the rows') in `__all__`. `FAMILIES` names the modules: a new family is one
entry there (docs/architecture.md).
"""

import importlib

from keras_resnets.models.registry import get_model, list_models, model_info, model_table

#: The family modules, in registration order.
FAMILIES = ("resnet", "preact", "highway", "densenet", "resnext", "wide_resnet", "variants")

_public = []
for _family in FAMILIES:
    _module = importlib.import_module(f"keras_resnets.models.{_family}")
    globals().update({name: getattr(_module, name) for name in _module.__all__})
    _public += _module.__all__

del _family, _module

__all__ = ["get_model", "list_models", "model_info", "model_table", *_public]
