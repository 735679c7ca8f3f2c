"""Tag schemes: alias of :mod:`mner_hf.models.labels` (the implementation travels with checkpoints)."""

from .models.labels import *  # noqa: F401,F403
from .models.labels import __all__  # noqa: F401
