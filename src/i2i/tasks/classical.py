"""Classical baselines as systems with no training, so that whatever scores a task (`i2i test`,
`validate`, `i2i compare`, `i2i inpaint classical:NAME`) scores them with the same metrics on the
same images and masks as the learned systems:

- `ClassicalInpaintingTask(method=...)`: a fill of `i2i.classical.FILLS` (harmonic, biharmonic,
  telea, navier_stokes, mean) on every image; deterministic, any size.
- `NearestNeighbourEdgesTask`, `NearestNeighbourLabelsTask`: paired translation by retrieval,
  the training target whose condition is closest (L2, at `retrieval_resolution`) to the input's.
  The training conditions are read once, at setup, from the datamodule's training set as stored
  (no random crop or flip), at most `max_train_images` of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from i2i.classical import fill_batch, fill_function, nearest_neighbour
from i2i.data import batch as B
from i2i.tasks.base import ImageTask
from i2i.tasks.inpainting import Inpainting
from i2i.tasks.translation import EdgesToPhoto, LabelsToPhoto


class ClassicalFill(nn.Module):
    """A classical fill as a network: (image, mask) -> completion; no parameters.

    Args:
        method: a name of `i2i.classical.FILLS` (harmonic, biharmonic, telea, navier_stokes,
            mean).

    Raises:
        ValueError: an unknown method (the message lists the choices).
    """

    def __init__(self, method: str = "harmonic"):
        super().__init__()
        fill_function(method)  # an unknown name stops here, with the choices
        self.method = method

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Fill every image's hole.

        Args:
            image: (N, 3, H, W) in [-1, 1].
            mask: (N, 1, H, W), 1 = known, 0 = hole.

        Returns:
            (N, 3, H, W): the images with their holes filled, known pixels unchanged.
        """
        return fill_batch(self.method, image, mask)

    def extra_repr(self) -> str:
        """The method, for `print(model)`."""
        return f"method={self.method!r}"


class _NoTraining:
    """What every system without training shares."""

    #: No dataset to learn from: `i2i compare` scores it without training.
    trains = False

    def training_step(self, batch: dict, batch_idx: int) -> None:
        raise RuntimeError(
            f"{type(self).__name__} has no training: evaluate it (`i2i test` / `validate` with "
            "its config, `i2i compare`, or `i2i inpaint classical:NAME`)"
        )

    def configure_optimizers(self) -> None:
        return None

    def eval_latents(self, batch: dict, variant: int = 0) -> None:
        return None  # deterministic: no latent


class ClassicalInpaintingTask(_NoTraining, Inpainting, ImageTask):
    """`sample(batch)`: every image of the batch filled by `method`, known pixels unchanged.

    Args:
        method: a name of `i2i.classical.FILLS`.
        classical_reference: the reference fill logged beside it in validation; None by
            default, since it is a reference itself.
        **kwargs (Any): `ImageTask`'s arguments (channels_last is always off).
    """

    #: Fills any size: `i2i inpaint` gives it the whole image, not a window resized to a model's.
    any_size = True

    def __init__(
        self,
        method: str = "harmonic",  # a name of i2i.classical.FILLS
        classical_reference: str | None = None,  # none by default: it is a reference itself
        **kwargs,
    ):
        # Named here, not defaulted in kwargs: LightningCLI passes the parent's default otherwise.
        super().__init__(channels_last=False, classical_reference=classical_reference, **kwargs)
        self.fill = ClassicalFill(method)

    @property
    def sampling_network(self) -> nn.Module:
        """The fill (`ClassicalFill`)."""
        return self.fill

    def generate(self, G: nn.Module, batch: dict, z=None, **kwargs) -> torch.Tensor:
        """The fill of the batch's images and masks.

        Args:
            G: the fill.
            batch: a batch dict with "image" (N, 3, H, W) in [-1, 1] and "mask" (1 = known).
            z (torch.Tensor | None): ignored (deterministic).
            **kwargs (Any): ignored.

        Returns:
            (N, 3, H, W) in the image's dtype.
        """
        return G(batch[B.IMAGE].float(), batch[B.MASK].float()).to(batch[B.IMAGE].dtype)


class Retrieval(nn.Module):
    """The bank of training conditions (downsampled) and their dataset indices; no parameters.

    Args:
        resolution: conditions are compared at resolution x resolution (area-resized).
    """

    def __init__(self, resolution: int = 32):
        super().__init__()
        self.resolution = resolution
        self.register_buffer("keys", torch.zeros(0), persistent=False)
        self.register_buffer("indices", torch.zeros(0, dtype=torch.long), persistent=False)

    def key(self, condition: torch.Tensor) -> torch.Tensor:
        """The retrieval key of each condition: area-resized to `resolution`, flattened.

        Args:
            condition: (N, C, H, W).

        Returns:
            float (N, C * resolution^2).
        """
        size = (self.resolution, self.resolution)
        return F.interpolate(condition.float(), size=size, mode="area").flatten(1)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        """The dataset index of the nearest training condition of each input (L2 of the keys).

        Args:
            condition: (N, C, H, W), with the bank's C.

        Returns:
            (N,) indices into the training set.
        """
        return nearest_neighbour(self.key(condition), self.keys, self.indices)[0]


class NearestNeighbour(_NoTraining, ImageTask):
    """Paired translation by retrieval (see the module doc); a problem mixin gives the condition.

    Args:
        max_train_images: training pairs in the bank; None takes all.
        retrieval_resolution: conditions are compared at this size (area-resized).
        **kwargs (Any): `ImageTask`'s arguments (channels_last is always off).
    """

    def __init__(
        self,
        max_train_images: int | None = 4096,  # training pairs in the bank (None: all)
        retrieval_resolution: int = 32,  # conditions are compared at this size (area-resized)
        **kwargs,
    ):
        super().__init__(channels_last=False, **kwargs)
        self.retrieval = Retrieval(retrieval_resolution)
        self._targets = None  # the training set the indices point into

    @property
    def sampling_network(self) -> nn.Module:
        """The retrieval bank (`Retrieval`)."""
        return self.retrieval

    def setup(self, stage: str) -> None:
        """Build the bank from the datamodule's training set."""
        ImageTask.setup(self, stage)  # not the problem's checks of the generator's channels
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        dataset = getattr(datamodule, "train_dataset", None)
        if dataset is None and datamodule is not None:
            datamodule.setup("fit")
            dataset = getattr(datamodule, "train_dataset", None)
        if dataset is None:
            raise ValueError(
                f"{type(self).__name__} retrieves training targets: its datamodule "
                f"({type(datamodule).__name__}) has no train_dataset"
            )
        self.build_bank(dataset)

    @torch.no_grad()
    def build_bank(self, dataset) -> None:
        """Read the training conditions (as stored: no random crop or flip) into the bank.

        Args:
            dataset (torch.utils.data.Dataset): the training dataset (batch dicts); the first
                `max_train_images` are read.
        """
        from i2i.metrics.fid_stats import deterministic_view

        view = deterministic_view(dataset)
        limit = self.hparams.max_train_images
        n = len(view) if limit is None else min(len(view), limit)
        keys, indices = [], []
        subset = torch.utils.data.Subset(view, range(n))
        for batch in DataLoader(subset, batch_size=64, shuffle=False):
            keys.append(self.retrieval.key(self.condition(batch)))
            indices.append(torch.arange(len(indices) * 64, len(indices) * 64 + len(keys[-1])))
        self.retrieval.keys = torch.cat(keys).to(self.device)
        self.retrieval.indices = torch.cat(indices).to(self.device)
        self._targets = view

    def generate(self, G: nn.Module, batch: dict, z=None, **kwargs) -> torch.Tensor:
        """The training photo whose condition is nearest to each input's.

        Args:
            G: the retrieval bank.
            batch: a batch dict with the condition's key and "image".
            z (torch.Tensor | None): ignored (deterministic).
            **kwargs (Any): ignored.

        Returns:
            (N, 3, H, W) training images in [-1, 1].

        Raises:
            RuntimeError: the bank was never built (no trainer ran `setup`).
        """
        if self._targets is None:
            raise RuntimeError(f"{type(self).__name__}: no training bank (run it with a trainer)")
        nearest = G(self.condition(batch)).tolist()
        out = torch.stack([self._targets[i][B.IMAGE] for i in nearest])
        return out.to(self.device, batch[B.IMAGE].dtype)


class NearestNeighbourEdgesTask(EdgesToPhoto, NearestNeighbour):
    """Edges -> photo by retrieval of the training photo with the closest edge map."""

    def setup(self, stage: str) -> None:
        """Build the bank (the generator's channel checks do not apply: there is no generator)."""
        NearestNeighbour.setup(self, stage)


class NearestNeighbourLabelsTask(LabelsToPhoto, NearestNeighbour):
    """Labels -> photo by retrieval of the training photo with the closest label map."""

    def setup(self, stage: str) -> None:
        """Build the bank (the generator's channel checks do not apply: there is no generator)."""
        NearestNeighbour.setup(self, stage)
