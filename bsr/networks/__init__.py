"""Networks of B-SR: the registration U-Net and the reconstruction/fusion auto-encoder."""

from .autoencoder import AutoEncoder
from .unet import RegUNet, pad_to_multiple

__all__ = ["AutoEncoder", "RegUNet", "pad_to_multiple", "count_parameters"]


def count_parameters(module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (all, or only those with requires_grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
