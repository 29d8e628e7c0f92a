"""The adversarial layer: any number of networks and optimizers, and a training iteration that
runs a list of phases.

A phase is one optimizer step: which network it updates, which loss (a method of the task that
returns the loss and what to log), which part of the split batch it reads, and when it runs (every
k iterations, from iteration a to b). The GAN objective is chosen by name (`i2i.losses`). So a
system says, as data, what the official training loop does: CoModGAN's G, D and lazy-R1 steps,
GLCIC's three phases, CycleGAN's two generators and two discriminators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from i2i.losses import gan_objective
from i2i.tasks.base import ImageTask

OptimizerCallable = Callable[[Iterable], torch.optim.Optimizer]


@dataclass(frozen=True)
class Phase:
    """One optimizer step of a training iteration.

    Attributes:
        name: a label for profilers and benchmarks.
        network: the attribute name of the network whose optimizer steps.
        loss: the name of the task method: part of the batch -> (loss, {name: value to log}).
        part: the part of the split batch it reads (see `ImageTask.batches_per_step`).
        every: runs on iterations divisible by this (counted from `start`); 0 never.
        start: the first iteration it may run at.
        stop: the iteration it stops before; None runs to the end.
        keep_zero_grads: zero the gradients instead of dropping them, so that parameters the loss
            does not reach still take their (zero-gradient) optimizer step, as TensorFlow's
            optimizers do.
    """

    name: str  # a label for profilers and benchmarks
    network: str  # the attribute name of the network whose optimizer steps
    loss: str  # the task method: part of the batch -> (loss, {name: value to log})
    part: int = 0  # the part of the split batch it reads (see ImageTask.batches_per_step)
    every: int = 1  # on iterations divisible by this (0: never)
    start: int = 0  # from this iteration on
    stop: int | None = None  # up to this iteration (excluded); None: to the end
    # Zero the gradients instead of dropping them: parameters that the loss does not reach still
    # take their (zero-gradient) optimizer step, as TensorFlow's optimizers do.
    keep_zero_grads: bool = False

    def runs_at(self, iteration: int) -> bool:
        """Whether this phase runs at an iteration.

        Args:
            iteration: the iteration number (from 0).

        Returns:
            True when start <= iteration < stop and (iteration - start) is a multiple of `every`.
        """
        if self.every <= 0 or iteration < self.start:
            return False
        if self.stop is not None and iteration >= self.stop:
            return False
        return (iteration - self.start) % self.every == 0


class AdversarialTask(ImageTask):
    """Trains the networks registered with `add_network` by the phases of `phases()`.

    Args:
        *args (Any): `ImageTask`'s arguments.
        objective: the GAN objective by name: minimax | nonsaturating | lsgan | hinge | wgan
            (see `i2i.losses.gan_objective`).
        lr_constant_iterations: None keeps the learning rate constant; else it is constant for
            this many iterations, then decays linearly.
        lr_decay_iterations: ... to 0 over this many iterations (pix2pix, CycleGAN).
        **kwargs (Any): `ImageTask`'s arguments.

    Raises:
        ValueError: a negative schedule length.
    """

    def __init__(
        self,
        *args,
        objective: str = "nonsaturating",  # minimax | nonsaturating | lsgan | hinge | wgan
        lr_constant_iterations: int | None = None,  # None: constant lr; else then a linear decay
        lr_decay_iterations: int = 0,  # ... to 0 over this many iterations (pix2pix, CycleGAN)
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if lr_decay_iterations < 0 or (lr_constant_iterations or 0) < 0:
            raise ValueError("lr_constant_iterations and lr_decay_iterations must be >= 0")
        self.automatic_optimization = False
        self.d_loss_fn, self.g_loss_fn = gan_objective(objective)
        self._optimizer_factories: dict[str, OptimizerCallable] = {}

    def add_network(
        self, name: str, module: nn.Module, optimizer: OptimizerCallable | None = None
    ) -> None:
        """Register a network as `self.<name>`, trained by `optimizer`.

        Args:
            name: the attribute name (what `Phase.network` refers to).
            module: the network.
            optimizer: builds the network's optimizer from its parameters; None when no optimizer
                trains it (e.g. an EMA copy).
        """
        setattr(self, name, module)
        if optimizer is not None:
            self._optimizer_factories[name] = optimizer

    @property
    def trained_networks(self) -> list[str]:
        """Names of the networks with an optimizer, in the order of `configure_optimizers`."""
        return list(self._optimizer_factories)

    def phases(self) -> list[Phase]:
        """The training iteration's phases, in order: what each system defines.

        Returns:
            The phases; each runs when `Phase.runs_at` the current iteration.
        """
        raise NotImplementedError

    def iteration_settings(self) -> list[str]:
        """The lr schedule's lengths when a schedule is set (they count iterations)."""
        hp = self.hparams
        if hp.lr_constant_iterations is None:
            return []
        return ["the lr schedule's lr_constant_iterations and lr_decay_iterations"]

    def adjust_optimizer(self, name: str, optimizer: torch.optim.Optimizer) -> None:
        """A hook to change a freshly built optimizer (CoModGAN: the lazy-R1 correction).

        Args:
            name: the network's name.
            optimizer: its optimizer, changed in place.
        """

    def lr_factor(self, iteration: int) -> float:
        """The learning-rate multiplier at an iteration.

        1 for `lr_constant_iterations`, then a linear decay that reaches 0 after
        `lr_decay_iterations` more.

        Args:
            iteration: the iteration number.

        Returns:
            The factor in [0, 1].
        """
        hp = self.hparams
        if hp.lr_constant_iterations is None or iteration < hp.lr_constant_iterations:
            return 1.0
        if hp.lr_decay_iterations <= 0:
            return 0.0
        return max(0.0, 1.0 - (iteration - hp.lr_constant_iterations) / hp.lr_decay_iterations)

    def configure_optimizers(self):
        """One optimizer per trained network (and a LambdaLR of `lr_factor` each when scheduled)."""
        optimizers = []
        for name, factory in self._optimizer_factories.items():
            optimizer = factory(getattr(self, name).parameters())
            self.adjust_optimizer(name, optimizer)
            optimizers.append(optimizer)
        if self.hparams.lr_constant_iterations is None:
            return optimizers
        # Stepped once per iteration (their state, the iteration, is in every checkpoint).
        schedulers = [torch.optim.lr_scheduler.LambdaLR(o, self.lr_factor) for o in optimizers]
        return optimizers, schedulers

    def after_phase(self, phase: Phase, part: dict) -> None:
        """A hook after each phase's optimizer step (CoModGAN: the G_ema update after D).

        Args:
            phase: the phase that ran.
            part: the part of the batch it read.
        """

    def training_step(self, batch: dict, batch_idx: int) -> None:
        """Run the phases due at this iteration, step the schedulers, count and log."""
        optimizers = self.optimizers()
        if not isinstance(optimizers, list | tuple):
            optimizers = [optimizers]
        by_network = dict(zip(self.trained_networks, optimizers, strict=True))
        parts = [self.prepare(part) for part in self.split_batch(batch)]
        iteration = int(self.iteration)
        logs: dict[str, torch.Tensor] = {}
        for phase in self.phases():
            if not phase.runs_at(iteration):
                continue
            with self.phase(phase.name):
                for name in self.trained_networks:  # only this phase's network takes gradients
                    getattr(self, name).requires_grad_(name == phase.network)
                loss, phase_logs = getattr(self, phase.loss)(parts[phase.part])
                optimizer = by_network[phase.network]
                optimizer.zero_grad(set_to_none=not phase.keep_zero_grads)
                self.manual_backward(loss)
                optimizer.step()
            self.after_phase(phase, parts[phase.part])
            logs.update(phase_logs)
        for name in self.trained_networks:
            getattr(self, name).requires_grad_(True)
        if self.hparams.lr_constant_iterations is not None:
            schedulers = self.lr_schedulers()
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
                scheduler.step()
        images = next(iter(parts[0].values())).shape[0]
        self.count_iteration(images)
        self.log_dict(
            {k: v.detach().float() for k, v in logs.items()}, prog_bar=True, batch_size=images
        )
