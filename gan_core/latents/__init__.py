"""After training: W latents, projection of real images, style mixing and SeFa edits (StyleGAN2 only).

    from gan_core.latents import project, ProjectionConfig, load_target, save_w, mixing_grid, sefa_directions
"""

from __future__ import annotations

from .mixing import mix_ws, mixing_grid, parse_styles, style_mix
from .perceptual import DEFAULT_DISTANCE, DISTANCES, make_distance
from .projection import ProjectionConfig, ProjectionResult, load_target, project, w_stats
from .sefa import SeFa, apply_direction, edit_strip, sefa_directions, style_affines
from .w import (
    LatentError,
    interpolation_frames_w,
    lerp_w,
    load_w,
    render,
    require_stylegan2,
    save_w,
    to_ws,
    truncate,
    w_avg,
    w_from_seeds,
    w_from_z,
)

__all__ = [
    "DEFAULT_DISTANCE", "DISTANCES", "LatentError", "ProjectionConfig", "ProjectionResult", "SeFa",
    "apply_direction", "edit_strip", "interpolation_frames_w", "lerp_w", "load_target", "load_w", "make_distance",
    "mix_ws", "mixing_grid", "parse_styles", "project", "render", "require_stylegan2", "save_w", "sefa_directions",
    "style_affines", "style_mix", "to_ws", "truncate", "w_avg", "w_from_seeds", "w_from_z", "w_stats",
]
