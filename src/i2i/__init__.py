"""i2i: conditional image-to-image translation with co-modulated GANs."""

__version__ = "0.1.0"
