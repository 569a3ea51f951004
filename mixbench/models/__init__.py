"""Models: backbones, heads and classifiers. Importing this package registers all of them."""

# One import per module that registers components; adding a module is adding one line.
from mixbench.models import (
    backbones,  # noqa: F401
    heads,  # noqa: F401
)
