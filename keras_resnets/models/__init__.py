"""Model families. Importing this package registers every builder.

Each family module holds its table of rows, registers them with
`registry.register_rows` and defines `__all__` with its public builders (the
generic ones and the rows'); add one import line here per family.
"""

from keras_resnets.models import densenet, highway, preact, resnet, resnext, wide_resnet
from keras_resnets.models.densenet import *  # noqa: F403
from keras_resnets.models.highway import *  # noqa: F403
from keras_resnets.models.preact import *  # noqa: F403
from keras_resnets.models.registry import get_model, list_models, model_info, model_table
from keras_resnets.models.resnet import *  # noqa: F403
from keras_resnets.models.resnext import *  # noqa: F403
from keras_resnets.models.wide_resnet import *  # noqa: F403

_FAMILIES = (resnet, preact, highway, densenet, resnext, wide_resnet)

__all__ = [
    "get_model",
    "list_models",
    "model_info",
    "model_table",
    *(name for family in _FAMILIES for name in family.__all__),
]
