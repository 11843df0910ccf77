"""What fusing the activation passes could save at most: the minibatch timed with and without them.

    python bench/ablate_activations.py --res 64 --cbase 4096 --cmax 256 --map 2 --zdim 512 --batch 8 \\
        --augment none --r1-gamma 10 --r1-interval 16 --rounds 3 [--out bench/results/ablate_activations.json]

The leaky ReLU and the conv clamp after every convolution are memory-bound passes that eager PyTorch cannot
fuse into the convolution (a fused kernel would still read and write the tensor once). Replacing them with
the identity (the wrong function: timing only, never for training) gives an upper bound on what any fusion
of them could save. Rounds interleave the two variants in one process, one thread, so machine noise lands
on both alike. torch.profiler is no substitute here: on some CPUs it inflates the self time of large
elementwise ops many times over (docs/speed.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from side_by_side import Arm, _build_ours  # noqa: E402
from train_step import add_spec_arguments, spec_for  # noqa: E402

from gan_core.versions import runtime_versions  # noqa: E402


def _identity_act_clamp(x: torch.Tensor, act: str = "linear", clamp: float | None = None) -> torch.Tensor:
    return x


@contextlib.contextmanager
def activations_removed() -> Iterator[None]:
    """Every `act_clamp` call in the StyleGAN2 networks returns its input unchanged, until the block ends."""
    import gan_core.networks.layers as layers
    import gan_core.networks.stylegan2 as stylegan2

    original = layers.act_clamp
    layers.act_clamp = stylegan2.act_clamp = _identity_act_clamp  # type: ignore[assignment]
    try:
        yield
    finally:
        layers.act_clamp = stylegan2.act_clamp = original  # type: ignore[assignment]


def ablate(spec: dict, rounds: int, steps: int, warmup: int = 3) -> dict:
    """Seconds per round of `steps` minibatches, with and without the activation passes, interleaved."""
    root = str(Path(__file__).resolve().parent.parent)
    seconds: dict[str, list[float]] = {"full": [], "without_activations": []}
    with tempfile.TemporaryDirectory() as tmp:
        runner = _build_ours(Arm("ours", "ours", root, spec), tmp, "cpu")
        for _ in range(warmup):
            runner.step()
        for _ in range(rounds):
            for variant in seconds:
                ctx = activations_removed() if variant == "without_activations" else contextlib.nullcontext()
                with ctx:
                    t0 = time.perf_counter()
                    for _ in range(steps):
                        runner.step()
                    seconds[variant].append(time.perf_counter() - t0)
    per_round = [w / f for w, f in zip(seconds["without_activations"], seconds["full"], strict=True)]
    median = statistics.median(per_round)
    return {"seconds": seconds, "ratio_per_round": [round(r, 4) for r in per_round],
            "ratio_median": round(median, 4), "saving_at_most": round(1 - median, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_spec_arguments(ap)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="minibatches per round (default: the R1 interval)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/ablate_activations.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, spec = spec_for(args)
    result = {"spec": spec, "torch": torch.__version__, "threads": 1, "versions": runtime_versions("cpu"),
              **ablate(spec, args.rounds, args.steps or spec["r1_interval"])}
    print(f"without activation and clamp passes / full, per round: {result['ratio_per_round']}; "
          f"fusing them could save at most {result['saving_at_most'] * 100:.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
