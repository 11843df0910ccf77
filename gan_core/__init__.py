"""gan_core: StyleGAN2-ADA + DigGAN for ~100-image datasets, in plain PyTorch.

No web, queue or storage imports here: train from a notebook or `python -m gan_core`.
"""

__version__ = "0.1.0"
