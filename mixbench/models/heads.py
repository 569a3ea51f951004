"""Classification heads (interface B): pool the backbone's features, then one linear layer."""

from __future__ import annotations

from torch import Tensor, nn

from mixbench.registry import HEADS


def pool_features(x: Tensor, num_prefix_tokens: int = 0) -> Tensor:
    """Reduce backbone features to N×C.

    4-D feature maps are averaged over space; 3-D token sequences use the class token when the backbone has
    prefix tokens, else the mean over tokens; 2-D features are returned as they are.
    """
    if x.dim() == 4:
        return x.mean(dim=(2, 3))
    if x.dim() == 3:
        return x[:, 0] if num_prefix_tokens > 0 else x.mean(dim=1)
    if x.dim() == 2:
        return x
    raise ValueError(f"backbone features must be 2-D, 3-D or 4-D, got shape {tuple(x.shape)}")


@HEADS.register_module("linear")
class LinearHead(nn.Module):
    """Global pooling, optional dropout, then a linear classifier exposed as ``fc`` (CAM-based policies read it).

    Args:
        in_features: the backbone's ``num_features``.
        num_classes: number of classes.
        dropout: dropout probability before ``fc``.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor, num_prefix_tokens: int = 0) -> Tensor:
        return self.fc(self.drop(pool_features(x, num_prefix_tokens)))
