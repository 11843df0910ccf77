"""One minibatch split over processes (ranks) and micro-batches (gradient accumulation).

Used by the Trainer when `cfg.gpus > 1` or `cfg.batch_gpu` is smaller than `batch_size / gpus`.
The rules that make W ranks of B/W images train like one process with B images:

- Same global stream. Every rank draws the whole minibatch's latents (and the sampler's whole
  batch of image indices) from the same seeded generators, then keeps its share: nothing drawn
  from the shared stream depends on the rank, so ranks never drift apart and the stream is the
  one a single process would draw. What is random per sample inside a pass (augmentation,
  regularizer noise, style mixing) comes from a per-shard generator forked off that stream,
  seeded by (seed, minibatch, shard), so shards differ and a resume redraws the same numbers.
- Strided shards. Shard s (rank r, accumulation round j: s = r + W*j) takes global positions
  s, s + S, s + 2S, ... (S = W * rounds). The minibatch-stddev layer groups sample i of a call of
  N with i % (N / g): with strided shards those are exactly the groups the one-process batch
  forms whenever the group size g divides the micro-batch (NVlabs keeps groups within a GPU too).
- Gradients. Every shard's loss is its micro-batch mean / rounds; rounds accumulate, then one
  flat all-reduce averages over ranks: the mean over the global batch (equal shard sizes).
- DigGAN pairs reals with fakes at random across the whole minibatch and smooths each of the B
  slots with its value at the last application, so its penalty needs every rank's norms: the
  ranks all-gather the (detached) per-sample gradient norms, compute the global penalty and its
  derivative with respect to each norm, and each shard back-propagates sum(coef * own norms)
  through its own double-backward graph. The penalty is a mean of per-pair squared gaps, so
  these pieces sum to the global penalty's gradient exactly (the sum over ranks is scaled by W
  to undo the averaging all-reduce). With accumulation rounds the norms come from a first
  pass without a graph, then each round recomputes its own with one.
- ADA's E[sign(D(real))] is summed over ranks before p moves (p equal everywhere); the tick's
  statistics are reduced once per tick; G's w_avg folds the whole batch's mean w once.
  G_ema needs nothing: identical gradients keep G, D and G_ema identical on every rank.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..regularizers import RegContext
from ..regularizers.base import call_d
from ..regularizers.diggan import DigGAN, gradient_gap
from .distributed import (
    DistInfo,
    agree,
    all_gather_stack,
    all_reduce_grads,
    all_reduce_sum,
    average_,
    barrier,
    broadcast_module,
)
from .freeze import apply_freeze_d
from .perf import autocast
from .stats import TickAccumulator, record_dig

if TYPE_CHECKING:
    from .trainer import Trainer


@dataclass(frozen=True)
class ShardPlan:
    """How a global minibatch of `batch` splits: `world` ranks x `rounds` micro-batches each."""

    batch: int
    world: int
    rank: int
    rounds: int

    @property
    def shards(self) -> int:
        return self.world * self.rounds

    def shard(self, j: int) -> int:
        return self.rank + self.world * j

    def positions(self, j: int, n: int | None = None) -> Tensor:
        """Global positions (within a batch of n, default `batch`) of this rank's round j."""
        return torch.arange(self.shard(j), self.batch if n is None else n, self.shards)

    def rank_positions(self) -> Tensor:
        return torch.arange(self.rank, self.batch, self.world)


def needs_sharding(cfg: Any, info: DistInfo) -> bool:
    per = cfg.batch_size // max(1, info.world)
    return info.world > 1 or (cfg.batch_gpu is not None and cfg.batch_gpu < per)


class ShardedTraining:
    """The Trainer's step, tick reduction and checkpoint coordination for a split minibatch."""

    def __init__(self, trainer: Trainer, info: DistInfo) -> None:
        cfg = trainer.cfg
        if info.world not in (1, cfg.gpus):  # one process may train any config (a time estimate, a resume)
            raise ValueError(f"the config asks for gpus={cfg.gpus} but {info.world} process(es) run it; start it "
                             f"with `gan_core train --gpus {cfg.gpus}` (gan_core.training.ranks.HelperRanks)")
        per = cfg.batch_size // info.world
        self.tr = trainer
        self.info = info
        self.plan = ShardPlan(cfg.batch_size, info.world, info.rank, per // (cfg.batch_gpu or per))
        dev = trainer.device
        self._pos = [self.plan.positions(j).to(dev) for j in range(self.plan.rounds)]
        self._rank_pos = self.plan.rank_positions().to(dev)
        self.broadcast_weights()

    def broadcast_weights(self) -> None:
        """Every rank takes rank 0's G, D and G_ema. Called on construction (the ranks are seeded alike; this
        makes it so whatever the seeding) and at the start of Trainer.run() on every rank, which is how
        weights rank 0 alone changed before training (pretrained ones) reach the others."""
        for m in (self.tr.G, self.tr.D, self.tr.G_ema):
            broadcast_module(m, self.info)

    # ------------------------------------------------------------------ helpers

    @contextlib.contextmanager
    def _shard_rng(self, tag: str, j: int) -> Iterator[None]:
        """Per-shard random numbers that leave the shared stream where it was."""
        tr = self.tr
        key = f"{tr.cfg.seed}:{tr.batch_idx}:{tag}:{self.plan.shard(j)}:{self.plan.shards}".encode()
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
        devices = [tr.device] if tr.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _to_global(self, per_round: list[Tensor]) -> Tensor:
        """Per-sample values of this rank's rounds -> the whole minibatch's vector, in global order."""
        gathered = all_gather_stack(torch.stack(per_round), self.info)  # [W, rounds, micro]
        return gathered.permute(2, 1, 0).reshape(-1)  # position t*S + j*W + r

    @staticmethod
    def _take(t: Tensor | None, pos: Tensor) -> Tensor | None:
        return None if t is None else t.index_select(0, pos)

    # -------------------------------------------------------------------- steps

    def train_step(self, acc: TickAccumulator) -> None:
        tr, cfg = self.tr, self.tr.cfg
        idx, flips = next(tr.sampler)  # the whole minibatch: every rank advances the sampler alike
        if tr.batch_idx % cfg.d_steps == 0:
            self._generator_step(acc)
        self._discriminator_step(idx, flips, acc)
        tr.cur_nimg += cfg.batch_size
        tr.batch_idx += 1
        tr._update_ema()
        if tr.ada is not None and tr.batch_idx % cfg.augment.ada_interval == 0:
            self._reduce_ada(to_main=False)
            p = tr.ada.update(tr.augment.host_p(), cfg.batch_size * cfg.augment.ada_interval)
            tr.augment.set_p(p)

    def _generator_step(self, acc: TickAccumulator) -> None:
        tr, cfg, plan = self.tr, self.tr.cfg, self.plan
        tr.D.requires_grad_(False)
        z = tr._z(cfg.batch_size)
        c = tr._fake_c(cfg.batch_size)
        tr.G_opt.zero_grad(set_to_none=True)
        for j, pos in enumerate(self._pos):
            zj, cj = z.index_select(0, pos), self._take(c, pos)
            with self._shard_rng("G", j):
                with autocast(tr.perf):
                    fake = tr._generate(zj, cj)
                aug = tr.augment(fake.float())
                with autocast(tr.perf):
                    logits = call_d(tr.D, aug, cj)
            loss_G = tr.g_loss(logits.float())
            (loss_G / plan.rounds).backward()
            acc.add("loss_G", loss_G)
        self._fold_w_avg(z)
        if tr.path_length is not None and tr.batch_idx % cfg.pl_interval == 0:
            self._path_length(acc)
        all_reduce_grads(tr.G.parameters(), self.info)
        tr.G_opt.step()
        tr.D.requires_grad_(True)
        if tr.freeze_d_layers:
            apply_freeze_d(tr.D, tr.freeze_d_layers)

    def _fold_w_avg(self, z: Tensor) -> None:
        """NVlabs' w_avg update, once for the whole minibatch with G's weights before this step: each rank
        folds its share's mean w, and the lerp is linear in that mean, so the ranks' average is the fold
        of the global mean."""
        mapping = getattr(self.tr.G, "mapping", None)
        if mapping is None or not hasattr(mapping, "w_avg"):
            return
        with torch.no_grad(), autocast(self.tr.perf):
            mapping(z.index_select(0, self._rank_pos), update_w_avg=True)
        average_([mapping.w_avg], self.info)

    def _path_length(self, acc: TickAccumulator) -> None:
        """Per shard on its slice of the shared draw. Each rank folds its own lengths into pl_mean (as
        NVlabs' GPUs do), then the ranks average it so every rank keeps the same value."""
        tr, cfg, plan = self.tr, self.tr.cfg, self.plan
        n = max(1, cfg.batch_size // 2)
        zpl = tr._z(n)
        ws_fn = (lambda z_: tr._mixed_ws(z_, False)) if tr.style_mixing_prob > 0 else None  # noqa: E731
        assert tr.path_length is not None
        for j in range(plan.rounds):
            pos = plan.positions(j, n).to(tr.device)
            if pos.numel() == 0:
                continue
            with self._shard_rng("PL", j):
                pl = tr.path_length(tr.G, zpl.index_select(0, pos), ws_fn=ws_fn)
            (pl * cfg.pl_weight * cfg.pl_interval / plan.rounds).backward()
            acc.add("pl", pl)
        average_([tr.path_length.pl_mean], self.info)

    def _discriminator_step(self, idx: Tensor, flips: Tensor, acc: TickAccumulator) -> None:
        tr, cfg, plan = self.tr, self.tr.cfg, self.plan
        shards = []
        with torch.no_grad():
            z = tr._z(cfg.batch_size)
            fake_c_all = tr._fake_c(cfg.batch_size)
            for j, pos in enumerate(self._pos):
                shard = self.plan.positions(j)
                real, real_c = tr.real_batch(idx[shard], flips[shard])
                fake_c = self._take(fake_c_all, pos)
                if fake_c is not None and real_c is None:
                    raise RuntimeError("a conditional D needs the real batch's labels")
                with self._shard_rng("D", j):
                    with autocast(tr.perf):
                        fake = tr._generate(z.index_select(0, pos), fake_c)
                    shards.append((tr.augment(real), tr.augment(fake.float()), real_c, fake_c))
        due = [r for r in tr.regularizers if r.is_due(tr.batch_idx)]
        measure_dig = acc.count("dig") == 0
        need_real = measure_dig or any(r.needs_real_grad for r in due)
        need_fake = measure_dig or any(r.needs_fake_grad for r in due)
        both = need_real and need_fake
        dig = next((r for r in due if isinstance(r, DigGAN)), None)
        norms: tuple[Tensor, Tensor] | None = None
        if both and plan.rounds > 1:
            # Every round's norms before any backward (DigGAN needs them all); no graph kept.
            rn, fn = [], []
            for real_aug, fake_aug, real_c, fake_c in shards:
                ctx = RegContext(tr.D, real_aug, fake_aug, create_graph=False, real_c=real_c, fake_c=fake_c,
                                 d_loss=tr.d_loss)
                rn.append(ctx.real().norms.detach())
                fn.append(ctx.fake().norms.detach())
            norms = (self._to_global(rn), self._to_global(fn))
        dig_coefs: tuple[Tensor, Tensor] | None = None
        tr.D_opt.zero_grad(set_to_none=True)
        for j, (real_aug, fake_aug, real_c, fake_c) in enumerate(shards):
            real_logits, fake_logits, ctx = tr.d_forward(real_aug, fake_aug, real_c, fake_c, due, need_real, need_fake,
                                                         joinable=not (due or measure_dig))
            loss = tr.d_loss(real_logits, fake_logits)
            acc.add("loss_D", loss)
            loss = loss / plan.rounds
            if ctx is not None:
                real_out, fake_out = ctx.real(with_grad=need_real), ctx.fake(with_grad=need_fake)
                if both and norms is None:  # one round: this pass's norms are the rank's
                    assert real_out.norms is not None and fake_out.norms is not None
                    norms = (self._to_global([real_out.norms.detach()]), self._to_global([fake_out.norms.detach()]))
                for reg in due:
                    mult = getattr(reg, "lazy_multiplier", reg.interval)
                    if reg is dig:
                        if dig_coefs is None:
                            assert norms is not None
                            dig_coefs = self._diggan_coefficients(dig, *norms, acc)
                        assert real_out.norms is not None and fake_out.norms is not None
                        pos = self._pos[j]
                        surrogate = ((dig_coefs[0].index_select(0, pos) * real_out.norms).sum()
                                     + (dig_coefs[1].index_select(0, pos) * fake_out.norms).sum())
                        loss = loss + surrogate * (dig.weight * mult * plan.world)
                    else:
                        with self._shard_rng(f"reg:{reg.name}", j):
                            penalty, reg_stats = reg.penalty(ctx)
                        loss = loss + penalty * (mult / plan.rounds)
                        for k, v in reg_stats.items():
                            acc.add(k, v)
            loss.backward()
            acc.add("D_real", real_logits.mean())
            acc.add("D_fake", fake_logits.mean())
            if tr.ada is not None:
                tr.ada.observe(real_logits.detach())
        all_reduce_grads(tr.D.parameters(), self.info)
        tr.D_opt.step()
        if norms is not None:  # the one-process statistics, on the whole minibatch's norms
            record_dig(acc, *norms)

    @staticmethod
    def _diggan_coefficients(dig: DigGAN, real: Tensor, fake: Tensor, acc: TickAccumulator) -> tuple[Tensor, Tensor]:
        """d(penalty)/d(norm) for every sample of the minibatch; advances DigGAN's moving average
        and draws its pairing from the shared stream, exactly as one process would."""
        r = real.detach().clone().requires_grad_(True)
        f = fake.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            gap, g_real, g_fake = gradient_gap(r, f, dig.hparams["alpha"], dig.prev_real, dig.prev_fake)
            coef_r, coef_f = torch.autograd.grad(gap, [r, f])
        dig.prev_real, dig.prev_fake = g_real.detach(), g_fake.detach()
        acc.add("dig_smoothed", gap.detach())
        return coef_r, coef_f

    # ------------------------------------------------------- ticks, checkpoints

    def _reduce_ada(self, to_main: bool) -> None:
        """Sum the ranks' pending E[sign(D(real))] observations. to_main: only rank 0 keeps the total
        (before a checkpoint, which rank 0 writes; the next reduction then counts it once)."""
        ada = self.tr.ada
        if ada is None or not self.info.active:
            return
        total, count = ada.pending()
        vec = torch.stack([total.double() if total is not None else torch.zeros((), dtype=torch.float64,
                                                                                 device=self.tr.device),
                           torch.tensor(float(count), dtype=torch.float64, device=self.tr.device)])
        vec = all_reduce_sum(vec.to(self.tr.device), self.info)
        keep = not to_main or self.info.is_main
        n = int(vec[1]) if keep else 0  # the one host read, every ada_interval minibatches (as one process)
        ada.set_pending(vec[0].float() if n else None, n)

    def reduce_tick(self, acc: TickAccumulator) -> None:
        dev = self.tr.device
        acc.all_reduce_means(lambda t: all_reduce_sum(t.to(dev), self.info).cpu())

    def agree_stop(self, flag: bool) -> bool:
        return agree(flag, self.info, self.tr.device)

    def before_snapshot(self) -> None:
        self._reduce_ada(to_main=True)

    def after_snapshot(self) -> None:
        barrier(self.info)  # the other ranks wait until rank 0's checkpoint is on disk

    def after_load(self, ckpt: dict[str, Any]) -> None:
        """Every rank loaded rank 0's checkpoint: the pending ADA sum is the ranks' total, so only rank 0
        keeps it; on CUDA each rank's generator takes rank 0's (cuda:0) state."""
        tr = self.tr
        if tr.ada is not None and not self.info.is_main:
            tr.ada.reset()
        saved = ckpt.get("rng", {}).get("cuda") or []
        if tr.device.type == "cuda" and saved:
            torch.cuda.set_rng_state(saved[0], device=tr.device)
