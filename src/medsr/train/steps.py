"""The per-iteration steps: everything that differs between the SRResNet and SRGAN stages.

A step takes one batch (lq, hr) and updates the networks; it returns detached scalar tensors
(kept on the device, so the loop does not synchronise every iteration), one per name in
``step.names``. After an epoch the loop averages each name and calls ``step.summarize(means)``
for extra log columns derived from those means (e.g. each loss term's share of the total).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from medsr.losses import PerceptualLoss, discriminator_loss, generator_adversarial_loss, pixel_loss


def autocast(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast on the device, or nothing (no weight cache, so it can be graph-captured)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=False)


class SupervisedStep:
    """Minimise the pixel loss (MSE as the paper, L1 or Charbonnier) between G(lq) and hr, plus,
    with a teacher, ``distill_weight`` times the same loss between G(lq) and the teacher's output.

    Returned per iteration: ``loss``; with a teacher also ``pixel`` and ``distill`` (unweighted).
    ``grad_clip``: the generator's gradient norm is clipped to it (None: no clipping).
    """

    def __init__(
        self,
        generator: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss: str,
        amp: torch.dtype | None,
        *,
        grad_clip: float | None = None,
        teacher: nn.Module | None = None,
        distill_weight: float = 0.0,
    ) -> None:
        self.generator, self.optimizer, self.loss, self.amp = generator, optimizer, pixel_loss(loss), amp
        self.grad_clip, self.teacher, self.distill_weight = grad_clip, teacher, distill_weight
        self.names = ("loss", "pixel", "distill") if teacher is not None else ("loss",)

    def __call__(self, lq: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(lq.device, self.amp):
            sr = self.generator(lq)
        pixel = self.loss(sr.float(), hr)
        loss, out = pixel, {}
        if self.teacher is not None:
            with torch.no_grad(), autocast(lq.device, self.amp):
                target = self.teacher(lq).float()
            distill = self.loss(sr.float(), target)
            loss = pixel + self.distill_weight * distill
            out = {"pixel": pixel.detach(), "distill": distill.detach()}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.generator.parameters(), self.grad_clip)
        self.optimizer.step()
        return {"loss": loss.detach(), **out}

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """Extra log columns from the epoch means of ``names``: none for the supervised step."""
        return {}


class AdversarialStep:
    """SRGAN: one discriminator update, then one generator update with
    ``l_G = l_content(VGG) + adversarial_weight * l_adv (+ pixel_weight * MSE)`` (Equation 2).

    Returned per iteration (detached scalar tensors on the device):
    ``loss`` (l_G); the unweighted ``content`` (rescaled VGG MSE), ``adversarial``
    (-log D(G(lq))) and ``pixel`` (MSE(sr, hr); 0 when ``pixel_weight`` is 0); the weighted terms
    ``content_term``, ``adversarial_term``, ``pixel_term``, which add up to ``loss``; and the
    discriminator's ``d_loss``, ``d_real`` = mean D(hr), ``d_fake`` = mean D(G(lq)) (in (0, 1)).
    """

    names = (
        "loss",
        "content",
        "adversarial",
        "pixel",
        "content_term",
        "adversarial_term",
        "pixel_term",
        "d_loss",
        "d_real",
        "d_fake",
    )
    #: the weighted terms of ``loss``, in the order of ``summarize``'s shares
    terms = ("content", "adversarial", "pixel")

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        discriminator_plain: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        perceptual: PerceptualLoss,
        adversarial_weight: float,
        pixel_weight: float,
        amp: torch.dtype | None,
        grad_clip: float | None = None,
    ) -> None:
        self.grad_clip = grad_clip
        self.generator, self.discriminator, self.discriminator_plain = (
            generator,
            discriminator,
            discriminator_plain,
        )
        self.opt_g, self.opt_d, self.perceptual = opt_g, opt_d, perceptual
        self.adversarial_weight, self.pixel_weight, self.amp = adversarial_weight, pixel_weight, amp

    def __call__(self, lq: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(lq.device, self.amp):
            sr = self.generator(lq)
        # discriminator: real and fake in one forward (one DDP reduction per update)
        for parameter in self.discriminator_plain.parameters():
            parameter.requires_grad_(True)
        with autocast(lq.device, self.amp):
            logits = self.discriminator(torch.cat([hr, sr.detach().to(hr.dtype)])).float()
        real, fake = logits.chunk(2)
        d_loss = discriminator_loss(real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        # generator: D frozen and used unwrapped, so only G's gradients are computed and reduced
        for parameter in self.discriminator_plain.parameters():
            parameter.requires_grad_(False)
        with autocast(lq.device, self.amp):
            fake_for_g = self.discriminator_plain(sr).float()
            content = self.perceptual(sr.float(), hr).float()
        adversarial = generator_adversarial_loss(fake_for_g)
        content_term = content
        adversarial_term = self.adversarial_weight * adversarial
        loss = content_term + adversarial_term
        if self.pixel_weight:
            pixel = F.mse_loss(sr.float(), hr)
            pixel_term = self.pixel_weight * pixel
            loss = loss + pixel_term
        else:
            pixel = pixel_term = torch.zeros((), device=loss.device)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.generator.parameters(), self.grad_clip)
        self.opt_g.step()
        return {
            "loss": loss.detach(),
            "content": content.detach(),
            "adversarial": adversarial.detach(),
            "pixel": pixel.detach(),
            "content_term": content_term.detach(),
            "adversarial_term": adversarial_term.detach(),
            "pixel_term": pixel_term.detach(),
            "d_loss": d_loss.detach(),
            "d_real": torch.sigmoid(real).mean().detach(),
            "d_fake": torch.sigmoid(fake).mean().detach(),
        }

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """Each weighted term's share of the generator loss, from the epoch means.

        Args:
            means: epoch mean of every name in ``names`` (at least ``<term>_term`` for each term).

        Returns:
            ``{"content_share", "adversarial_share", "pixel_share"}``: mean term / sum of the
            mean terms (they add up to 1; all NaN when the terms sum to 0). The losses are
            non-negative (MSEs and -log D), so with non-negative weights each share is in [0, 1].
        """
        values = {name: float(means[f"{name}_term"]) for name in self.terms}
        total = sum(values.values())
        return {f"{name}_share": (value / total if total else float("nan")) for name, value in values.items()}


class CudaGraphStep:
    """A supervised step captured once in a CUDA graph (forward, backward and optimiser), then
    replayed: the batch is copied into static tensors, so one launch replaces hundreds of kernel
    launches, which dominate at Ledig's batch of 16 small patches. Single process only; the
    optimiser must be created with ``capturable=True``."""

    def __init__(self, step: SupervisedStep, warmup: int = 3) -> None:
        self.step, self.warmup, self.calls = step, warmup, 0
        self.names = step.names
        self.graph: torch.cuda.CUDAGraph | None = None

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        """The wrapped step's extra log columns (see ``SupervisedStep.summarize``)."""
        return self.step.summarize(means)

    def __call__(self, lq: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step(lq, hr)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            self.static_lq, self.static_hr = lq.clone(), hr.clone()
            self.graph = torch.cuda.CUDAGraph()
            self.step.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(self.graph):
                self.static_out = self.step(self.static_lq, self.static_hr)
        self.static_lq.copy_(lq)
        self.static_hr.copy_(hr)
        self.graph.replay()
        return {name: value.clone() for name, value in self.static_out.items()}
