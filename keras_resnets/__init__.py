"""keras_resnets: the residual family of image classifiers for Keras 3.

Every builder has the keras.applications signature::

    import keras_resnets
    model = keras_resnets.ResNet50(include_top=False, pooling="avg")

`list_models()` names them all and `get_model(name, **kwargs)` builds one by
name. `preprocess_input` and `decode_predictions` go with the pretrained
ImageNet weights (`weights="imagenet"`).
"""

__version__ = "0.1.0"

from keras_resnets import layers  # noqa: E402,F401
from keras_resnets.models import *  # noqa: E402,F401,F403
from keras_resnets.models import __all__ as _model_names  # noqa: E402
from keras_resnets.preprocessing import decode_predictions, preprocess_input  # noqa: E402

__all__ = ["decode_predictions", "layers", "preprocess_input", *_model_names]
