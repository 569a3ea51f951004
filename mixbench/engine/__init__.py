"""Training engine: mmengine Runner build, compat patches, distributed launch, hooks, run records.

Importing this package registers the engine's hooks, the AMP optimiser wrapper and the classifier model.
"""

from mixbench.engine import compat, hooks  # noqa: F401
from mixbench.models import classifier  # noqa: F401  (registers MODELS['classifier'])
