"""Differential privacy for the trainer: DP-SGD through Opacus, set up for one run.

Opacus does the private parts: per-example gradients (GradSampleModule's hooks on the LoRA
adapters' Linear layers), clipping each to `max_grad_norm`, Gaussian noise on their sum
(DPOptimizer, which DeepSpeed then steps like any torch optimizer), and the RDP accounting that
turns (noise multiplier, sampling rate, steps) into the epsilon spent. This module picks the
noise for a target epsilon, samples the batches as the accounting assumes, and reports.

What the guarantee covers: the exported weights, per training block (see DPConfig). The losses
the trainer logs are computed from the data without noise, as in Opacus' own examples; they are
not covered.
"""

from __future__ import annotations

from typing import Iterator

from training.config import DPConfig

ACCOUNTANT = "rdp"  # Opacus' Renyi-DP accountant (Mironov 2017), its default


class Privacy:
    """One run's DP-SGD: `blocks` training blocks, batches of `batch_size` blocks on average,
    `steps` optimizer steps."""

    def __init__(self, config: DPConfig, blocks: int, batch_size: int, steps: int):
        from opacus.accountants.utils import get_noise_multiplier

        if config.delta >= 1 / blocks:
            raise ValueError(f"dp.delta {config.delta:g} is not below 1 / {blocks} training blocks: a guarantee that "
                             f"may fail for one example in {blocks} protects nobody; set dp.delta below {1 / blocks:.1e}")
        if batch_size > blocks:
            raise ValueError(f"train.micro_batch_size {batch_size} exceeds the {blocks} training blocks")
        self.config, self.blocks, self.steps = config, blocks, steps
        self.sample_rate = batch_size / blocks
        self.batch_size = batch_size
        self.noise_multiplier = config.noise_multiplier or get_noise_multiplier(
            target_epsilon=config.target_epsilon, target_delta=config.delta, sample_rate=self.sample_rate,
            steps=steps, accountant=ACCOUNTANT)
        self.optimizer = None

    def wrap(self, model, optimizer):
        """(model, optimizer) for DeepSpeed: the model records every example's gradient, the optimizer
        clips and noises them before its step. The loss is a mean over the batch's tokens."""
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        model = GradSampleModule(model, loss_reduction="mean")
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=self.config.max_grad_norm,
                                     expected_batch_size=self.batch_size, loss_reduction="mean")
        return model, self.optimizer

    def noise_to_signal(self, trainable_parameters: int) -> float:
        """Expected norm of the noise in one step's mean gradient over the most its signal can be
        (the clipping bound): noise_multiplier x sqrt(parameters) / batch size. Far above 1, the
        updates are mostly noise and the model barely learns."""
        return self.noise_multiplier * trainable_parameters ** 0.5 / self.batch_size

    def empty_batch(self) -> None:
        """A Poisson sample took no block: the step still adds noise (to a zero sum), as Opacus does."""
        for param in self.optimizer.params:
            param.grad_sample = param.new_zeros((0, *param.shape))

    def clear(self) -> None:
        """After each step: DeepSpeed's own zero_grad clears .grad only, not the per-example gradients."""
        self.optimizer.zero_grad(set_to_none=True)

    def epsilon(self, steps: int) -> float:
        from opacus.accountants import RDPAccountant

        accountant = RDPAccountant()
        accountant.history = [(self.noise_multiplier, self.sample_rate, steps)] if steps else []
        return accountant.get_epsilon(self.config.delta) if steps else 0.0

    def report(self, steps: int) -> dict:
        """What the card, MLflow and `conveyor lineage` show of the run's privacy."""
        return {"epsilon": self.epsilon(steps), "target_epsilon": self.config.target_epsilon,
                "delta": self.config.delta, "noise_multiplier": self.noise_multiplier,
                "max_grad_norm": self.config.max_grad_norm, "sample_rate": self.sample_rate, "steps": steps,
                "accountant": ACCOUNTANT, "unit": "training block"}


def describe(report: dict, detail: bool = False) -> str:
    """`Privacy.report` as one line, the same wherever it is shown (run summary, MLflow tag, card);
    `detail` adds how the budget was spent."""
    line = (f"DP-SGD epsilon {report['epsilon']:.3g} spent of {report['target_epsilon']:g}, "
            f"delta {report['delta']:.1e}")
    if detail:
        line += (f", noise multiplier {report['noise_multiplier']:.3g}, per-sample clipping at "
                 f"{report['max_grad_norm']:g}, sampling rate {report['sample_rate']:.3g} "
                 f"(the guarantee is per {report['unit']})")
    return line


def poisson_batches(blocks, sample_rate: float, seed: int, skip: int = 0) -> Iterator:
    """Batches forever, step k's holding each block with probability `sample_rate`, independently
    (Poisson sampling, which the RDP accounting of subsampled Gaussian noise assumes). Step k's draw
    depends on the seed and k alone, so a resumed run takes the batches the interrupted one would have.
    A batch may be empty."""
    import torch

    step = skip
    while True:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        yield blocks[torch.rand(len(blocks), generator=generator) < sample_rate]
        step += 1
