"""keras_resnets: the residual family of image classifiers for Keras 3.

Every builder has the keras.applications signature::

    import keras_resnets
    model = keras_resnets.ResNet50(include_top=False, pooling="avg")

`list_models()` names them all and `get_model(name, **kwargs)` builds one by
name. `preprocess_input` and `decode_predictions` go with the pretrained
ImageNet weights (`weights="imagenet"`). `export_saved_model` writes a
TensorFlow Serving export; `feature_extractor`, `freeze`, `replace_head`,
`stage_outputs` and `with_dtype_policy` are the transfer-learning helpers.
"""

__version__ = "0.1.0"

from keras_resnets import layers  # noqa: E402,F401
from keras_resnets.export import export_saved_model  # noqa: E402
from keras_resnets.layers import StochasticDepth, survival_probabilities  # noqa: E402
from keras_resnets.models import *  # noqa: E402,F401,F403
from keras_resnets.models import __all__ as _model_names  # noqa: E402
from keras_resnets.models.network import Network  # noqa: E402
from keras_resnets.preprocessing import decode_predictions, preprocess_input  # noqa: E402
from keras_resnets.transfer import (  # noqa: E402
    feature_extractor,
    freeze,
    replace_head,
    stage_outputs,
    with_dtype_policy,
)
from keras_resnets.utils import find_layer  # noqa: E402

__all__ = [
    "Network",
    "StochasticDepth",
    "decode_predictions",
    "export_saved_model",
    "feature_extractor",
    "find_layer",
    "freeze",
    "layers",
    "preprocess_input",
    "replace_head",
    "stage_outputs",
    "survival_probabilities",
    "with_dtype_policy",
    *_model_names,
]
