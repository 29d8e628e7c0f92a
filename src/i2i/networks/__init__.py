"""Plain PyTorch networks (no Lightning): the co-modulated generator and its discriminator."""

from i2i.networks.comod import CoModDiscriminator, CoModGenerator

__all__ = ["CoModDiscriminator", "CoModGenerator"]
