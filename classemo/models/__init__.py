"""Paper components, one file each, built through `create_model`."""

from classemo.models.registry import create_model, list_models, register_model
# Importing a model module registers its presets.
from classemo.models import classemo_net  # noqa: F401,E402
from classemo.models import lbvcnn  # noqa: F401,E402
from classemo.models import convlstm  # noqa: F401,E402
from classemo.models import stargan  # noqa: F401,E402
from classemo.models import cnn_gru  # noqa: F401,E402
from classemo.models import fan  # noqa: F401,E402

__all__ = ["create_model", "list_models", "register_model"]
