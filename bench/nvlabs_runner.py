"""NVlabs stylegan2-ada-pytorch's training minibatch, run from the user's own checkout, on CPU or GPU.

Nothing of NVlabs is in this repository: `NVlabsRunner(path, spec)` imports their `training/` and
`torch_utils/` from `path` at run time and drives one minibatch the way their
`training/training_loop.py` does: a real batch plus `len(phases) * batch` latents per minibatch;
the phases Gmain, Greg (every G_reg_interval=4), Dmain, Dreg (every D_reg_interval) with their
lazy-regularization Adam (lr and betas scaled by interval / (interval + 1)), each phase through
their `StyleGAN2Loss.accumulate_gradients` with gain = interval, `nan_to_num` on every gradient
before `opt.step()`; G_ema as `p_ema.copy_(p.lerp(p_ema, beta))`; ADA every `ada_interval` from
their `training_stats.Collector`. Their per-tick status line, snapshots and metrics are left out
(we time training, not maintenance), and so is their multi-process DataLoader: the real batch is
indexed from an in-memory uint8 tensor, as our trainer does.

What their code needs to run here (torch 2.x, no CUDA build of their plugins):
- `num_fp16_res=0` unless the spec sets `num_fp16_res` (train_step.py's CUDA arm `nvlabs_fp16` sets 4, as
  their 'auto'). Their fp16 layers are meant for CUDA; on a CPU they run ~40x slower (measured:
  a G step 55 s instead of 1.3 s at 64x64), so the CPU comparison uses their float32 path, and
  `conv_clamp` is set to the same value as ours (NVlabs 'auto' uses 256 with fp16, none with --fp32).
- Nothing is patched. `training_loop.py` sets `conv2d_gradfix.enabled` and
  `grid_sample_gradfix.enabled` to True, and so do we. Both then check the torch version (and
  conv2d_gradfix the device) and fall back to `torch.nn.functional` on anything but torch
  1.7-1.9, so their private-op code (`torch._C._jit_get_operation('aten::grid_sampler_2d_backward')`
  and `'aten::cudnn_convolution_backward_weight'`, gone from torch 2.x) is never reached; grid_sample_gradfix warns
  ("not supported on PyTorch ..."), which we silence. Stock F.grid_sample/F.conv2d have double
  backward in torch >= 1.10, so R1 through their augment pipe is computed exactly as they intend.
- Their custom CUDA ops (`bias_act`, `upfirdn2d`) take their reference (`impl='ref'`) path
  whenever the tensor is not on CUDA; on CUDA they JIT-compile with ninja, which needs a CUDA
  toolkit (their `_init()` warns and falls back when the build fails); `use_plugins=False` makes
  `_init()` return False up front, the reference path without a build attempt.
"""

from __future__ import annotations

import copy
import importlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# NVlabs train.py augpipe_specs['bgc'] (their default pipe): every transform at multiplier 1.
BGC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
           brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
G_REG_INTERVAL = 4  # NVlabs train.py: args.G_reg_interval = 4 (always)


@dataclass
class Phase:
    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int


def _import_nvlabs(path: Path) -> dict[str, Any]:
    path = Path(path).resolve()
    if not (path / "training" / "training_loop.py").is_file():
        raise FileNotFoundError(f"{path} is not a stylegan2-ada-pytorch checkout (no training/training_loop.py)")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    names = ("dnnlib", "training.networks", "training.loss", "training.augment", "torch_utils.misc",
             "torch_utils.training_stats", "torch_utils.ops.conv2d_gradfix", "torch_utils.ops.grid_sample_gradfix",
             "torch_utils.ops.bias_act", "torch_utils.ops.upfirdn2d")
    return {n: importlib.import_module(n) for n in names}


class NVlabsRunner:
    """One NVlabs training minibatch per `step()` (see the module docstring).

    spec keys: resolution, z_dim, w_dim, mapping_layers, channel_base, channel_max, mbstd_group_size,
    conv_clamp, batch_size, g_lr, d_lr, betas, ema_kimg, ema_rampup, r1_gamma, r1_interval, pl_weight,
    style_mixing_prob, augment ("ada" | "none"), augment_p, ada_target, ada_interval, ada_kimg, seed,
    num_images.
    """

    def __init__(self, path: Path, spec: dict[str, Any], device: str = "cpu", use_plugins: bool = True) -> None:
        m = _import_nvlabs(path)
        self.m = m
        dev = torch.device(device)
        self.device = dev
        # As training_loop.py sets them; on this torch both fall back to stock ops (module docstring).
        m["torch_utils.ops.conv2d_gradfix"].enabled = True
        m["torch_utils.ops.grid_sample_gradfix"].enabled = True
        warnings.filterwarnings("ignore", message=r"grid_sample_gradfix not supported")
        warnings.filterwarnings("ignore", message=r"conv2d_gradfix not supported")
        if dev.type == "cuda":  # training_loop.py defaults: cudnn_benchmark=True, allow_tf32=False
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        if not use_plugins:
            for op in ("torch_utils.ops.bias_act", "torch_utils.ops.upfirdn2d"):
                m[op]._init = lambda: False  # their reference path, as on CPU
        s = spec
        self.spec = s
        np.random.seed(s["seed"])
        torch.manual_seed(s["seed"])
        net = m["training.networks"]
        common = dict(c_dim=0, img_resolution=s["resolution"], img_channels=3)
        fp16_res = s.get("num_fp16_res", 0)
        G = net.Generator(z_dim=s["z_dim"], w_dim=s["w_dim"], **common,
                          mapping_kwargs=dict(num_layers=s["mapping_layers"]),
                          synthesis_kwargs=dict(channel_base=s["channel_base"], channel_max=s["channel_max"],
                                                num_fp16_res=fp16_res, conv_clamp=s["conv_clamp"]))
        D = net.Discriminator(**common, channel_base=s["channel_base"], channel_max=s["channel_max"], num_fp16_res=fp16_res,
                              conv_clamp=s["conv_clamp"], epilogue_kwargs=dict(mbstd_group_size=s["mbstd_group_size"]))
        self.G = G.train().requires_grad_(False).to(dev)
        self.D = D.train().requires_grad_(False).to(dev)
        self.G_ema = copy.deepcopy(self.G).eval()

        stats = m["torch_utils.training_stats"]
        self.augment_pipe = None
        self.ada_stats = None
        if s["augment"] == "ada":
            self.augment_pipe = m["training.augment"].AugmentPipe(**BGC).train().requires_grad_(False).to(dev)
            self.augment_pipe.p.copy_(torch.as_tensor(float(s["augment_p"])))
            self.ada_stats = stats.Collector(regex="Loss/signs/real")
        self.loss = m["training.loss"].StyleGAN2Loss(
            device=dev, G_mapping=self.G.mapping, G_synthesis=self.G.synthesis, D=self.D,
            augment_pipe=self.augment_pipe, style_mixing_prob=s["style_mixing_prob"], r1_gamma=s["r1_gamma"],
            pl_weight=s["pl_weight"])
        self.phases: list[Phase] = []
        for name, module, lr, reg_interval in (("G", self.G, s["g_lr"], G_REG_INTERVAL),
                                               ("D", self.D, s["d_lr"], s["r1_interval"])):
            ratio = reg_interval / (reg_interval + 1)  # lazy regularization
            opt = torch.optim.Adam(module.parameters(), lr=lr * ratio, betas=[float(b) ** ratio for b in s["betas"]],
                                   eps=1e-8)
            self.phases += [Phase(name + "main", module, opt, 1), Phase(name + "reg", module, opt, reg_interval)]
        # Their loop keeps a collector over every statistic (read at each tick).
        self.stats_collector = stats.Collector(regex=".*")
        g = torch.Generator().manual_seed(s["seed"])
        n, r = s["num_images"], s["resolution"]
        self.images = torch.randint(0, 256, (n, 3, r, r), dtype=torch.uint8, generator=g)
        self.batch_gen = torch.Generator().manual_seed(s["seed"] + 1)
        self.cur_nimg = 0
        self.batch_idx = 0

    def step(self) -> None:
        s, dev, B = self.spec, self.device, self.spec["batch_size"]
        misc = self.m["torch_utils.misc"]
        idx = torch.randint(0, self.images.shape[0], (B,), generator=self.batch_gen)
        real = self.images[idx].to(dev).to(torch.float32) / 127.5 - 1
        real_c = torch.zeros([B, 0], device=dev)
        gen_z = torch.randn([len(self.phases) * B, self.G.z_dim], device=dev).split(B)
        gen_c = torch.zeros([B, 0], device=dev)
        for phase, z in zip(self.phases, gen_z):
            if self.batch_idx % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            self.loss.accumulate_gradients(phase=phase.name, real_img=real, real_c=real_c, gen_z=z, gen_c=gen_c,
                                           sync=True, gain=phase.interval)
            phase.module.requires_grad_(False)
            for p in phase.module.parameters():
                if p.grad is not None:
                    misc.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
            phase.opt.step()
        ema_nimg = s["ema_kimg"] * 1000
        if s["ema_rampup"] is not None:
            ema_nimg = min(ema_nimg, self.cur_nimg * s["ema_rampup"])
        beta = 0.5 ** (B / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.cur_nimg += B
        self.batch_idx += 1
        if self.ada_stats is not None and self.batch_idx % s["ada_interval"] == 0:
            self.ada_stats.update()
            adjust = np.sign(self.ada_stats["Loss/signs/real"] - s["ada_target"]) * (B * s["ada_interval"]) / (
                s["ada_kimg"] * 1000)
            self.augment_pipe.p.copy_((self.augment_pipe.p + adjust).max(misc.constant(0, device=dev)))

    def tick(self) -> dict[str, float]:
        """Their per-tick statistics read (outside the timed steps)."""
        self.stats_collector.update()
        return {k: float(self.stats_collector.mean(k)) for k in ("Loss/G/loss", "Loss/D/loss")
                if self.stats_collector.num(k)}
