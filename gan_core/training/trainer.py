"""The training loop: StyleGAN2-ADA (or SNGAN/BigGAN) with pluggable D regularizers (DigGAN, R1, ...).

One `Trainer` owns the networks, optimizers, augmentation and the kimg-based
schedule. Callers watch and steer it through `TrainingCallbacks` (ticks,
snapshots, a stop flag): the CLI shows a progress bar with them, the Celery
worker turns them into job progress and stored checkpoints.

Schedule per minibatch (NVlabs phases, with the lazy regularizers folded into
the D step so they reuse its forward pass):
  G step   : non-saturating loss on D(aug(G(z))) (+ lazy path length)
  D step   : logistic loss on D(aug(real)), D(aug(G(z))) + every regularizer due
             at this step, weighted by its interval
  ADA      : every `ada_interval` steps, p follows E[sign(D(real))] to its target
  EMA      : G_ema tracks G with a half-life of `ema_kimg`
A tick (every `tick_kimg`) reports averaged stats; every `snapshot_ticks`
ticks a checkpoint and a sample grid are written.

Any `network.arch` (gan_core.networks.build_networks). `loss` picks logistic
(non-saturating G) or hinge losses. With `d_steps` k > 1 the G step runs on every
k-th minibatch only (G, D, D, ..., D, G, D, ...): every minibatch is one D step on
fresh real images, so kimg, regularizer intervals and ADA count D steps / real
images shown to D. For a class-conditional D (BigGAN), real images carry their
dataset labels (all 0 with num_classes 1) and fakes get uniformly drawn labels,
passed to G and D alike and to the regularizers through RegContext.

Speed (docs/speed.md, `cfg.perf`, gan_core.training.perf): StyleGAN2 nets run channels-last;
a D step with no input gradient due runs reals and fakes through D in one call (batch order
chosen so minibatch-stddev groups are the ones two calls would form); optional bf16 autocast in
those passes only; fused Adam and multi-tensor EMA. Nothing in a step reads a device value on
the host: stats stay tensors until the tick ends (one transfer), ADA's p has a host copy, and
the training images live on the device. The one read left is ADA's E[sign(D(real))] every
`ada_interval` minibatches (NVlabs reads it there too).

Several processes (GPUs) or gradient accumulation (`cfg.gpus`, `cfg.batch_gpu`): `self.shard`
(gan_core.training.sharded) runs each minibatch split over ranks and micro-batches; the hooks here
only route the step to it, reduce a tick's statistics, agree on stopping, and let rank 0 alone
write stats, grids and checkpoints. One process with its whole minibatch takes none of them.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..augment import AdaAugment, AdaptiveP, build_augment
from ..config import CONDITIONAL_ARCHS, TrainConfig, config_from_dict, config_to_dict, fit_to_dataset, validate_config
from ..data import BatchSampler, PreparedDataset, resize_images, to_float
from ..networks import build_networks
from ..networks.strided_conv import use_window_matmul
from ..networks.winograd import use_winograd
from ..regularizers import RegContext, build_regularizers
from ..regularizers.base import call_d
from ..versions import runtime_versions
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import SINGLE, DistInfo
from .freeze import apply_freeze_d
from .losses import LOSSES, PathLengthRegularizer
from .perf import (
    adam_kwargs,
    apply_backend_flags,
    autocast,
    foreach_lerp_copy,
    resolve_perf,
    reuse_host_memory,
    to_memory_format,
)
from .sharded import ShardedTraining, needs_sharding
from .stats import TickAccumulator, record_dig

# Training images stay on the accelerator when they fit in this much memory (100-shot sets: ~20 MB
# at 256x256); larger sets are indexed on the host and copied per batch.
DEVICE_DATASET_BYTES = 2 << 30

LOSS_KEYS = ("loss_G", "loss_D")


class TrainingCallbacks:
    """Override what you need. All are called from the training thread."""

    def on_tick(self, stats: dict[str, Any]) -> None:
        pass

    def on_snapshot(self, snapshot: Snapshot) -> None:
        pass

    def should_stop(self) -> bool:
        return False

    def on_rollback(self, rollback: Rollback) -> None:
        """Training diverged and the trainer went back once, with halved learning rates (see Rollback)."""


@dataclass
class Rollback:
    """Where a diverged run went back to: `checkpoint` (its last good one), or None for the weights it had
    when `run()` began (the pretrained ones for a transfer run). Ticks after `kimg` will be trained again."""

    kimg: float  # where training continues from
    checkpoint: Path | None
    reason: str  # the diverged tick, for logs and job records
    g_lr: float  # the new, halved learning rates
    d_lr: float


@dataclass
class Snapshot:
    kimg: float
    checkpoint: Path
    grid: Path
    sha256: str
    metrics: dict[str, float] = field(default_factory=dict)
    is_best: bool = False
    final: bool = False


@dataclass
class TrainResult:
    kimg: float
    stopped: bool
    last_checkpoint: Path | None
    best_checkpoint: Path | None = None


class TrainingDiverged(RuntimeError):
    """Losses became NaN/inf and a rollback with a lower learning rate did not help."""


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        dataset: PreparedDataset,
        run_dir: Path,
        device: str | None = "cpu",
        callbacks: TrainingCallbacks | None = None,
        resume_from: Path | None = None,
        progress: bool = False,
        dist: DistInfo | None = None,
    ) -> None:
        """`dist`: this process's rank in a multi-process job (gan_core.training.ranks.HelperRanks);
        None for one process. Every rank builds its Trainer alike; pass callbacks/progress on rank 0.
        Without `dist`, a config asking for gpus > 1 trains in this one process on the whole minibatch
        (a time estimate, or continuing such a run on one device)."""
        validate_config(cfg)
        cfg = fit_to_dataset(cfg, dataset.num_classes)  # BigGAN's num_classes 0 -> the dataset's
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.callbacks = callbacks or TrainingCallbacks()
        self.progress = progress
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "grids").mkdir(parents=True, exist_ok=True)

        net = cfg.network
        self.perf = resolve_perf(cfg.perf, self.device, net.arch)
        apply_backend_flags(cfg.perf, self.device)
        reuse_host_memory(cfg.perf, self.device)
        torch.manual_seed(cfg.seed)
        G, D = build_networks(net)
        self.G, self.D = G.to(self.device).train(), D.to(self.device).train()
        to_memory_format(self.perf, self.G, self.D)
        self.g_loss, self.d_loss = LOSSES[cfg.loss]
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # NVlabs loss.py run_G: with this probability a generated batch takes its ws from a second
        # latent from a random layer on (StyleGAN2 only; validate_config refuses it elsewhere).
        self.style_mixing_prob = float(getattr(cfg, "style_mixing_prob", 0.0))
        self.augment = build_augment(cfg.augment).to(self.device)
        self.ada = (
            AdaptiveP(target=cfg.augment.ada_target, adjust_kimg=cfg.augment.ada_kimg)
            if isinstance(self.augment, AdaAugment)
            else None
        )
        self.regularizers = build_regularizers(cfg.regularizers)
        self.path_length = PathLengthRegularizer().to(self.device) if cfg.pl_weight > 0 else None
        betas = tuple(float(b) for b in cfg.adam_betas)
        opt = adam_kwargs(self.perf)
        self.freeze_d_layers = int(getattr(cfg, "freeze_d_layers", 0))
        d_params = apply_freeze_d(self.D, self.freeze_d_layers) if self.freeze_d_layers else list(self.D.parameters())
        self.G_opt = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr, betas=betas, eps=1e-8, **opt)
        self.D_opt = torch.optim.Adam(d_params, lr=cfg.d_lr, betas=betas, eps=1e-8, **opt)
        # EMA pairs, listed once for the multi-tensor update.
        self._ema_pairs = (list(self.G_ema.parameters()), [p.detach() for p in self.G.parameters()])
        self._ema_buffers = (list(self.G_ema.buffers()), list(self.G.buffers()))

        images = dataset.images
        if images.shape[-1] != net.resolution:
            images = resize_images(images, net.resolution)
        self.images = images  # uint8 [N, 3, R, R] at the training resolution (host)
        # Batches are gathered where they are used: on the device when the set fits (no host copy per step).
        fits = images.numel() * images.element_size() <= DEVICE_DATASET_BYTES
        self._batch_source = images.to(self.device) if fits else images
        # Class labels when D is conditional: the dataset's (num_classes > 1), else all 0. None = unconditional.
        self.num_classes = net.num_classes if net.arch in CONDITIONAL_ARCHS else 0
        self.labels: Tensor | None = None
        if self.num_classes:
            use = self.num_classes > 1 and dataset.labels is not None
            self.labels = (torch.tensor(dataset.labels, dtype=torch.long) if use
                           else torch.zeros(images.shape[0], dtype=torch.long))
        self._labels_dev = self.labels.to(self.device) if self.labels is not None else None
        self._joint_order_cache: dict[int, tuple[Tensor, Tensor, Tensor] | None] = {}
        self.sampler = BatchSampler(images.shape[0], cfg.batch_size, seed=cfg.seed, mirror=cfg.mirror)

        # Loop state: everything here is saved in checkpoints.
        self.cur_nimg = 0
        self.batch_idx = 0
        self.tick = 0
        self.elapsed = 0.0
        self.best_value: float | None = None
        self.rolled_back = False
        self._start_state: dict[str, Any] | None = None  # run()'s starting point while there is no checkpoint
        self.last_checkpoint: Path | None = None
        self.best_checkpoint: Path | None = None
        self._real_features: np.ndarray | None = None
        self.dist = dist or SINGLE
        self.shard = ShardedTraining(self, self.dist) if needs_sharding(cfg, self.dist) else None
        if resume_from is not None:
            self.load(resume_from)

    # ------------------------------------------------------------------ steps

    @property
    def total_nimg(self) -> int:
        return int(round(self.cfg.kimg * 1000))

    def _z(self, n: int) -> Tensor:
        return torch.randn(n, self.G.z_dim, device=self.device)

    def _fake_c(self, n: int) -> Tensor | None:
        """Uniform class labels for fakes (conditional D only; no RNG draw otherwise)."""
        if not self.num_classes:
            return None
        return torch.randint(self.num_classes, (n,), device=self.device)

    def _mixed_ws(self, z: Tensor, update_w_avg: bool) -> Tensor:
        """StyleGAN2 ws for z, with NVlabs' style mixing (loss.py run_G): a cutoff layer in
        [1, num_ws) and a coin with probability `style_mixing_prob`; on heads the ws from the
        cutoff on come from a fresh latent (that mapping call never updates w_avg). The cutoff and
        coin come from the CPU generator: no device read, same draws on every device."""
        ws = self.G.mapping(z, update_w_avg=update_w_avg)
        cutoff = int(torch.randint(1, ws.shape[1], ()))
        if float(torch.rand(())) < self.style_mixing_prob:
            ws2 = self.G.mapping(torch.randn_like(z))
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return ws

    def _generate(self, z: Tensor, c: Tensor | None, update_w_avg: bool = False) -> Tensor:
        """G's images for a training pass (style mixing when configured)."""
        if self.style_mixing_prob > 0:
            return self.G.synthesis(self._mixed_ws(z, update_w_avg))
        return self.G(z, c, update_w_avg=update_w_avg)

    def _generator_step(self, acc: TickAccumulator) -> None:
        cfg = self.cfg
        self.D.requires_grad_(False)
        z = self._z(cfg.batch_size)
        c = self._fake_c(cfg.batch_size)
        # update_w_avg: track the mean w (what truncation pulls towards), as NVlabs does in its G phase.
        with autocast(self.perf):
            fake = self._generate(z, c, update_w_avg=True)
        aug = self.augment(fake.float())
        with autocast(self.perf):
            logits = call_d(self.D, aug, c)
        loss_G = self.g_loss(logits.float())
        self.G_opt.zero_grad(set_to_none=True)
        loss_G.backward()
        if self.path_length is not None and self.batch_idx % cfg.pl_interval == 0:
            ws_fn = (lambda z_: self._mixed_ws(z_, False)) if self.style_mixing_prob > 0 else None  # noqa: E731
            pl = self.path_length(self.G, self._z(max(1, cfg.batch_size // 2)), ws_fn=ws_fn)
            (pl * cfg.pl_weight * cfg.pl_interval).backward()
            acc.add("pl", pl)
        self.G_opt.step()
        self.D.requires_grad_(True)
        if self.freeze_d_layers:
            apply_freeze_d(self.D, self.freeze_d_layers)
        acc.add("loss_G", loss_G)

    def _joint_order(self, n: int) -> tuple[Tensor, Tensor, Tensor] | None:
        """Batch order for one D call on [reals; fakes] that forms the same minibatch-stddev groups
        as two calls: (source index per position, positions of the reals, positions of the fakes),
        or None when the group size for 2n differs from n's (then two calls)."""
        if n not in self._joint_order_cache:
            mbstd = getattr(getattr(self.D, "b4", None), "mbstd", None)
            order = None
            if mbstd is None:
                ar = torch.arange(n)
                order = (torch.arange(2 * n), ar, ar + n)
            else:
                g = mbstd.effective_group_size(mbstd.group_size, n)
                if mbstd.effective_group_size(mbstd.group_size, 2 * n) == g:
                    # Sample i of a call of N joins group i % (N / g): a side's group r (its samples
                    # r, r + m, ...; m = n / g groups per side) sits at positions r, r + 2m, ...
                    m = n // g
                    j = torch.arange(n)
                    pos_real = (j // m) * (2 * m) + j % m
                    pos_fake = pos_real + m
                    src = torch.empty(2 * n, dtype=torch.long)
                    src[pos_real], src[pos_fake] = j, j + n
                    order = (src, pos_real, pos_fake)
            self._joint_order_cache[n] = (None if order is None
                                          else tuple(t.to(self.device) for t in order))  # type: ignore[assignment]
        return self._joint_order_cache[n]

    def d_forward(self, real_aug: torch.Tensor, fake_aug: torch.Tensor, real_c: Any, fake_c: Any, due: list[Any],
                  need_real: bool, need_fake: bool, joinable: bool) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """D's logits on reals and fakes for a D step (float32), and the RegContext the due regularizers read
        (None when one joint call served: nothing needs input gradients). Regularizer steps run in float32
        (double backward); plain steps may autocast."""
        joint = self._d_logits_joint(real_aug, fake_aug, real_c, fake_c) if joinable else None
        if joint is not None:
            return joint[0], joint[1], None
        plain = not due and not need_real and not need_fake
        ctx = RegContext(self.D, real_aug, fake_aug, create_graph=bool(due), real_c=real_c, fake_c=fake_c,
                         d_loss=self.d_loss)
        with autocast(self.perf, enabled=plain):
            real_out = ctx.real(with_grad=need_real)
            fake_out = ctx.fake(with_grad=need_fake)
        return real_out.logits.float(), fake_out.logits.float(), ctx

    def _d_logits_joint(self, real_aug: Tensor, fake_aug: Tensor, real_c: Tensor | None,
                        fake_c: Tensor | None) -> tuple[Tensor, Tensor] | None:
        """D's logits for both batches from one call (no input gradients), or None if not possible."""
        if not self.perf.joint_d_pass or real_aug.shape[0] != fake_aug.shape[0]:
            return None
        order = self._joint_order(real_aug.shape[0])
        if order is None:
            return None
        src, pos_real, pos_fake = order
        x = torch.cat([real_aug, fake_aug]).index_select(0, src)
        if self.perf.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        c = None if real_c is None or fake_c is None else torch.cat([real_c, fake_c]).index_select(0, src)
        with autocast(self.perf):
            logits = call_d(self.D, x, c).float()
        return logits.index_select(0, pos_real), logits.index_select(0, pos_fake)

    def _discriminator_step(self, real: Tensor, acc: TickAccumulator, real_c: Tensor | None = None) -> None:
        cfg = self.cfg
        with torch.no_grad():
            z = self._z(cfg.batch_size)
            fake_c = self._fake_c(cfg.batch_size)
            with autocast(self.perf):
                fake = self._generate(z, fake_c)
            fake_aug = self.augment(fake.float())
            real_aug = self.augment(real)
        if fake_c is not None and real_c is None:
            raise ValueError("this D is class-conditional: pass the real batch's labels (next_real_batch_and_labels)")
        due = [r for r in self.regularizers if r.is_due(self.batch_idx)]
        # DIG is reported every tick, with or without DigGAN: measure it on the first step of a
        # tick if no regularizer due this step computes both sides.
        measure_dig = acc.count("dig") == 0
        need_real = measure_dig or any(r.needs_real_grad for r in due)
        need_fake = measure_dig or any(r.needs_fake_grad for r in due)
        real_logits, fake_logits, ctx = self.d_forward(real_aug, fake_aug, real_c, fake_c, due, need_real, need_fake,
                                                       joinable=not (due or measure_dig))
        real_norms = fake_norms = None
        loss = self.d_loss(real_logits, fake_logits)
        acc.add("loss_D", loss)
        if ctx is not None:
            real_norms, fake_norms = ctx.real(with_grad=need_real).norms, ctx.fake(with_grad=need_fake).norms
            for reg in due:
                penalty, reg_stats = reg.penalty(ctx)
                # lazy_multiplier: interval, or 1 for regularizers weighted per application.
                loss = loss + penalty * getattr(reg, "lazy_multiplier", reg.interval)
                for k, v in reg_stats.items():
                    acc.add(k, v)
        self.D_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.D_opt.step()

        acc.add("D_real", real_logits.mean())
        acc.add("D_fake", fake_logits.mean())
        if real_norms is not None and fake_norms is not None:
            record_dig(acc, real_norms, fake_norms)
        if self.ada is not None:
            self.ada.observe(real_logits.detach())

    def _update_ema(self) -> None:
        cfg = self.cfg
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch_size / max(ema_nimg, 1e-8))
        with torch.no_grad():
            foreach_lerp_copy(*self._ema_pairs, beta)  # p_ema <- p.lerp(p_ema, beta), as NVlabs
            if self._ema_buffers[0]:
                torch._foreach_copy_(*self._ema_buffers)

    def next_real_batch_and_labels(self) -> tuple[Tensor, Tensor | None]:
        """The next real minibatch (float, x-flipped per the sampler) and its labels (None: unconditional)."""
        return self.real_batch(*next(self.sampler))

    def real_batch(self, idx: Tensor, flips: Tensor) -> tuple[Tensor, Tensor | None]:
        """The training images at `idx` (x-flipped where `flips`), as float on the device, and their labels."""
        src = self._batch_source
        idx = idx.to(src.device, non_blocking=True)
        x = src.index_select(0, idx)
        x = torch.where(flips.to(src.device, non_blocking=True).view(-1, 1, 1, 1), x.flip(3), x)
        x = to_float(x.to(self.device, non_blocking=True))
        if self.perf.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        c = None
        if self._labels_dev is not None:
            c = self._labels_dev.index_select(0, idx.to(self.device, non_blocking=True))
        return x, c

    def train_step(self, acc: TickAccumulator) -> None:
        """One minibatch: a D step, preceded by a G step on every `d_steps`-th minibatch."""
        with use_winograd(self.perf.winograd), use_window_matmul(self.perf.window_matmul):
            if self.shard is not None:
                self.shard.train_step(acc)
            else:
                self._train_step(acc)

    def _train_step(self, acc: TickAccumulator) -> None:
        real, real_c = self.next_real_batch_and_labels()
        if self.batch_idx % self.cfg.d_steps == 0:
            self._generator_step(acc)
        self._discriminator_step(real, acc, real_c)
        self.cur_nimg += self.cfg.batch_size
        self.batch_idx += 1
        self._update_ema()
        if self.ada is not None and self.batch_idx % self.cfg.augment.ada_interval == 0:
            # The only host read of a device value in a step: E[sign(D(real))] (ada.update).
            p = self.ada.update(self.augment.host_p(), self.cfg.batch_size * self.cfg.augment.ada_interval)
            self.augment.set_p(p)

    # ------------------------------------------------------------------- loop

    def run(self) -> TrainResult:
        cfg = self.cfg
        pbar = None
        if self.progress:
            from tqdm import tqdm

            pbar = tqdm(total=self.total_nimg / 1000, initial=self.cur_nimg / 1000, unit="kimg",
                        bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}]{postfix}")
        stopped = False
        # Without a checkpoint to roll back to, a divergence goes back to here: an in-memory copy of the
        # state (weights after any pretrained ones were applied, optimizers, RNG, ADA), dropped at the first
        # checkpoint. One copy of the networks: measured 1.3 MiB / 0.06 s for cpu-tiny, 270 MiB / ~1 s for
        # low-shot-256 on a 2-core CPU (G+D+G_ema; Adam's moments are empty before the first step).
        if self.shard is not None:
            # Every rank starts from rank 0's weights: pretrained ones that rank 0 alone loaded after building its
            # Trainer included (a worker's init_from, the CLI's --init-from). Every rank calls run() once.
            self.shard.broadcast_weights()
        self._start_state = copy.deepcopy(self.state_dict()) if self.last_checkpoint is None else None
        try:
            while self.cur_nimg < self.total_nimg and not stopped:
                stats = self._run_tick(pbar)
                if not self._finite(stats):
                    self._handle_divergence(stats)
                    continue
                self.callbacks.on_tick(stats)
                done = self.cur_nimg >= self.total_nimg
                stopped = not done and self._should_stop()
                if done or stopped or self.tick % cfg.snapshot_ticks == 0:
                    self.snapshot(final=done or stopped)
        finally:
            if pbar is not None:
                pbar.close()
        return TrainResult(self.cur_nimg / 1000, stopped, self.last_checkpoint, self.best_checkpoint)

    def _should_stop(self) -> bool:
        """The callbacks' stop request; with several ranks, rank 0's (its callbacks are the real ones)."""
        flag = self.callbacks.should_stop()
        return self.shard.agree_stop(flag) if self.shard is not None else flag

    def _run_tick(self, pbar: Any) -> dict[str, Any]:
        acc = TickAccumulator()
        tick_start_nimg = self.cur_nimg
        tick_end_nimg = min(self.total_nimg, tick_start_nimg + int(round(self.cfg.tick_kimg * 1000)))
        t0 = time.perf_counter()
        while self.cur_nimg < tick_end_nimg:
            self.train_step(acc)
            if pbar is not None:
                pbar.update(self.cfg.batch_size / 1000)
        if self.shard is not None:
            self.shard.reduce_tick(acc)  # one collective per tick: every rank reports the global means
        dt = time.perf_counter() - t0
        self.elapsed += dt
        self.tick += 1
        kimg = self.cur_nimg / 1000
        sec_per_kimg = dt / max((self.cur_nimg - tick_start_nimg) / 1000, 1e-9)
        stats: dict[str, Any] = {
            "tick": self.tick,
            "kimg": round(kimg, 4),
            "total_kimg": self.cfg.kimg,
            # Fixed keys first (null when not measured this tick), then whatever regularizers report.
            **acc.means(("loss_G", "loss_D", "r1", "dig", "dig_smoothed", "grad_norm_real",
                         "grad_norm_fake", "D_real", "D_fake", "pl")),
            **acc.means(acc.keys()),
            "augment_p": self.augment.host_p() if hasattr(self.augment, "host_p") else 0.0,
            "ada_rt": self.ada.last_rt if self.ada is not None else None,
            "sec_per_kimg": sec_per_kimg,
            "eta_seconds": max(0.0, (self.total_nimg - self.cur_nimg) / 1000 * sec_per_kimg),
            "time": self.elapsed,
        }
        if self.dist.is_main:
            with open(self.run_dir / "stats.jsonl", "a") as f:
                f.write(json.dumps(stats) + "\n")
        if pbar is not None:
            fmt = lambda v: f"{v:.3f}" if v is not None else "-"  # noqa: E731  (no G step in a short tick with d_steps > 1)
            pbar.set_postfix(lossG=fmt(stats["loss_G"]), lossD=fmt(stats["loss_D"]),
                             dig=f"{stats['dig']:.3g}" if stats["dig"] is not None else "-",
                             p=f"{stats['augment_p']:.2f}")
        return stats

    @staticmethod
    def _finite(stats: dict[str, Any]) -> bool:
        return all(stats.get(k) is None or math.isfinite(stats[k]) for k in LOSS_KEYS)

    def _handle_divergence(self, stats: dict[str, Any]) -> None:
        """Roll back once, with halved learning rates, to the last good checkpoint, or to where `run()`
        began when there is none yet; tell the callbacks. A second divergence ends the run."""
        where = f"kimg {stats['kimg']:.3f} (loss_G={stats['loss_G']}, loss_D={stats['loss_D']})"
        what_to_do = ("lower g_lr/d_lr (the preset's are a safe choice) or raise the R1 weight, and start a new run "
                      "(or resume from the last good checkpoint with them)")
        if self.rolled_back:
            raise TrainingDiverged(f"training diverged at {where} after one rollback with halved learning rates "
                                   f"(g_lr={self.cfg.g_lr:g}, d_lr={self.cfg.d_lr:g}), so training stopped: {what_to_do}")
        if self.last_checkpoint is not None:
            target: Path | None = self.last_checkpoint
            self.load(self.last_checkpoint)
        elif self._start_state is not None:
            target = None
            self._load_state(self._start_state)
        else:  # not reached from run(), which keeps its starting state until the first checkpoint
            raise TrainingDiverged(f"training diverged at {where} before any checkpoint; {what_to_do}")
        for opt in (self.G_opt, self.D_opt):
            for group in opt.param_groups:
                group["lr"] *= 0.5
        self.cfg.g_lr *= 0.5
        self.cfg.d_lr *= 0.5
        self.rolled_back = True
        self.callbacks.on_rollback(Rollback(kimg=self.cur_nimg / 1000, checkpoint=target,
                                            reason=f"training diverged at {where}",
                                            g_lr=self.cfg.g_lr, d_lr=self.cfg.d_lr))

    # ------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": config_to_dict(self.cfg),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "G_opt": self.G_opt.state_dict(),
            "D_opt": self.D_opt.state_dict(),
            "augment_p": self.augment.host_p() if hasattr(self.augment, "host_p") else 0.0,
            "ada": self.ada.state_dict() if self.ada is not None else {},
            "regularizers": {f"{i}:{r.name}": r.extra_state() for i, r in enumerate(self.regularizers)},
            "path_length": self.path_length.state_dict() if self.path_length is not None else {},
            "sampler": self.sampler.state_dict(),
            "progress": {
                "cur_nimg": self.cur_nimg,
                "batch_idx": self.batch_idx,
                "tick": self.tick,
                "elapsed": self.elapsed,
                "best_value": self.best_value,
                "rolled_back": self.rolled_back,
            },
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "versions": runtime_versions(self.device),  # project, torch, numpy, python, device
        }

    def load(self, path: Path) -> None:
        """Restore everything from a checkpoint so training continues exactly."""
        ckpt = load_checkpoint(Path(path))
        saved_net = config_from_dict(ckpt["config"]).network
        if saved_net != self.cfg.network:
            raise ValueError(f"checkpoint {path} has a different network config ({saved_net}) than this run")
        self._load_state(ckpt)
        self.last_checkpoint = Path(path)

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        """Restore a `state_dict()` (read from a checkpoint, or kept in memory)."""
        self.G.load_state_dict(ckpt["G"])
        self.D.load_state_dict(ckpt["D"])
        self.G_ema.load_state_dict(ckpt["G_ema"])
        self.G_opt.load_state_dict(ckpt["G_opt"])
        self.D_opt.load_state_dict(ckpt["D_opt"])
        if hasattr(self.augment, "set_p"):
            self.augment.set_p(ckpt["augment_p"])
        if self.ada is not None and ckpt.get("ada"):
            self.ada.load_state_dict(ckpt["ada"])
        for i, reg in enumerate(self.regularizers):
            reg.load_extra_state(ckpt["regularizers"].get(f"{i}:{reg.name}", {}))
        if self.path_length is not None and ckpt.get("path_length"):
            self.path_length.load_state_dict(ckpt["path_length"])
        self.sampler.load_state_dict(ckpt["sampler"])
        prog = ckpt["progress"]
        self.cur_nimg, self.batch_idx, self.tick = prog["cur_nimg"], prog["batch_idx"], prog["tick"]
        self.elapsed, self.best_value = prog["elapsed"], prog["best_value"]
        self.rolled_back = prog.get("rolled_back", False)
        torch.set_rng_state(ckpt["rng"]["torch"])
        if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        if self.shard is not None:  # also for the in-memory start state: every rank restores the same one
            self.shard.after_load(ckpt)

    def snapshot(self, final: bool = False) -> Snapshot:
        """Write a checkpoint and a sample grid; compute metrics if configured."""
        from ..sampling import generate_images, make_grid

        kimg = self.cur_nimg / 1000
        if self.shard is not None and not self.dist.is_main:
            return self._follow_snapshot(kimg, final)
        if self.shard is not None:
            self.shard.before_snapshot()
        rng_state = torch.get_rng_state()
        grid_path = self.run_dir / "grids" / f"grid-{kimg:09.3f}.png"
        seeds = list(range(self.cfg.num_grid))
        classes = [s % self.num_classes for s in seeds] if self.num_classes else None  # seed i shows class i % K
        images = generate_images(self.G_ema, seeds, psi=1.0, device=self.device, class_index=classes)
        make_grid(images).save(grid_path)
        try:
            metrics, is_best = self._snapshot_metrics(kimg)
        except (RuntimeError, ValueError, OSError) as exc:  # a metric must never cost the checkpoint
            warnings.warn(f"snapshot metrics at kimg {kimg:.3f} failed: {exc}", stacklevel=2)
            metrics, is_best = {}, False
        # Sampling and metrics must not change the training run: restore the RNG
        # before the state is captured, so a resumed run matches an uninterrupted one.
        torch.set_rng_state(rng_state)

        ckpt_dir = self.run_dir / "checkpoints"
        ckpt_path = ckpt_dir / f"ckpt-{kimg:09.3f}.pt"
        sha = save_checkpoint(ckpt_path, self.state_dict())
        _link_or_copy(ckpt_path, ckpt_dir / "latest.pt")
        self._checkpoint_written(ckpt_path)
        if is_best:
            _link_or_copy(ckpt_path, ckpt_dir / "best.pt")
            self.best_checkpoint = ckpt_dir / "best.pt"
        if self.shard is not None:
            self.shard.after_snapshot()
        snap = Snapshot(kimg, ckpt_path, grid_path, sha, metrics, is_best, final)
        self.callbacks.on_snapshot(snap)
        return snap

    def _follow_snapshot(self, kimg: float, final: bool) -> Snapshot:
        """A rank other than 0 at a snapshot: hand its ADA observations to rank 0, wait for the checkpoint."""
        assert self.shard is not None
        self.shard.before_snapshot()
        self.shard.after_snapshot()
        ckpt_path = self.run_dir / "checkpoints" / f"ckpt-{kimg:09.3f}.pt"
        self._checkpoint_written(ckpt_path)
        return Snapshot(kimg, ckpt_path, self.run_dir / "grids" / f"grid-{kimg:09.3f}.png", "", {}, False, final)

    def _checkpoint_written(self, path: Path) -> None:
        """Rollbacks go to this checkpoint from now on: the in-memory start state is no longer needed."""
        self.last_checkpoint = path
        self._start_state = None

    def _snapshot_metrics(self, kimg: float) -> tuple[dict[str, float], bool]:
        cfg = self.cfg
        snapshot_index = self.tick // cfg.snapshot_ticks
        if not cfg.metrics or snapshot_index % max(1, cfg.metrics_every) != 0:
            return {}, False
        from ..metrics import compute_metrics, dataset_features

        if self._real_features is None:
            self._real_features = dataset_features(
                self.images, cache_dir=self.run_dir / "features", device=self.device
            )
        metrics = compute_metrics(
            self.G_ema, self._real_features, metrics=tuple(cfg.metrics),
            num_gen=cfg.metrics_num_gen, device=self.device,
        )
        metrics["kimg"] = kimg
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        key = cfg.best_metric or cfg.metrics[0]
        value = metrics.get(key)
        is_best = value is not None and (self.best_value is None or value < self.best_value)
        if is_best:
            self.best_value = value
        return metrics, is_best


def _link_or_copy(src: Path, dst: Path) -> None:
    """Point `dst` at `src`'s bytes atomically (hard link if possible) with its checksum sidecar."""
    for s, d in ((src, dst), (Path(str(src) + ".sha256"), Path(str(dst) + ".sha256"))):
        tmp = d.with_name(f".{d.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(s, tmp)
        except OSError:
            import shutil

            shutil.copyfile(s, tmp)
        os.replace(tmp, d)
