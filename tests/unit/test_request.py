"""The CLI (`gan_core train` flags) and the API (a POST /v1/jobs body) resolve a config through one function,
gan_core.request.resolve_train_config: equivalent inputs give identical TrainConfigs, the same errors, and a
stored config (`train --config FILE`) resolves back to itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gan_core.cli import build_parser, build_train_config, load_config_file, main
from gan_core.config import (
    DIGGAN_ALPHA,
    PRESETS,
    SUGGESTED_REGULARIZERS,
    config_from_dict,
    config_to_dict,
    get_preset,
)
from gan_core.data import make_synthetic_dataset
from gan_core.regularizers import DigGAN, suggested_defaults
from gan_core.request import ConfigRequestError, TrainRequest, default_regularizer, resolve_train_config
from service.api.job_config import JobConfigError, resolve_config
from service.api.schemas.jobs import JobCreate
from service.core.settings import Settings


def cli_config(*flags: str) -> dict[str, Any]:
    args = build_parser().parse_args(["train", "--data", "unused", "--out", "unused", *flags])
    return config_to_dict(build_train_config(args))


def api_config(**body: Any) -> dict[str, Any]:
    return config_to_dict(resolve_config(JobCreate(dataset_id="ds", **body), Settings(max_job_gpus=4)))


EQUIVALENT = [
    ([], {}),
    (["--arch", "sngan"], {"arch": "sngan"}),
    (["--preset", "biggan-32", "--arch", "biggan"], {"preset": "biggan-32", "arch": "biggan"}),
    # a regularizer the preset lacks: the suggested defaults (weight, interval, declared params)
    (["--preset", "paper256", "--diggan-weight", "50"],
     {"preset": "paper256", "regularizers": [{"name": "r1"}, {"name": "diggan", "weight": 50}]}),
    # a regularizer the preset has: what is left out keeps the preset's values
    (["--diggan-alpha", "0.8", "--diggan-interval", "4"],
     {"regularizers": [{"name": "diggan", "interval": 4, "alpha": 0.8}, {"name": "r1"}]}),
    (["--r1-gamma", "0"], {"regularizers": [{"name": "diggan"}]}),  # weight 0 switches a regularizer off
    (["--reg", "lecam:0.3"], {"regularizers": [{"name": "diggan"}, {"name": "r1"}, {"name": "lecam", "weight": 0.3}]}),
    (["--arch", "biggan", "--reg", "diggan:500"], {"arch": "biggan", "regularizers": [{"name": "diggan", "weight": 500}]}),
    # schedules: a snapshot in whole ticks, a tick no longer than the run
    (["--kimg", "1", "--tick-kimg", "0.25", "--snapshot-kimg", "0.5"], {"kimg": 1, "tick_kimg": 0.25, "snapshot_kimg": 0.5}),
    (["--kimg", "1", "--tick-kimg", "0.25", "--snapshot-ticks", "2"], {"kimg": 1, "tick_kimg": 0.25, "snapshot_kimg": 0.5}),
    (["--kimg", "1", "--snapshot-kimg", "0.1"], {"kimg": 1, "snapshot_kimg": 0.1}),
    (["--kimg", "0.1"], {"kimg": 0.1}),
    (["--augment", "none", "--batch", "16", "--seed", "3", "--metrics", "kid"],
     {"augment": "none", "batch_size": 16, "seed": 3, "metrics": ["kid"]}),
    (["--batch", "8", "--gpus", "2", "--batch-gpu", "2"], {"batch_size": 8, "gpus": 2, "batch_gpu": 2}),  # split
    (["--set", "g_lr=0.001", "--set", "d_lr=0.003", "--set", "metrics_num_gen=64"],
     {"g_lr": 0.001, "d_lr": 0.003, "metrics_num_gen": 64}),
]


@pytest.mark.parametrize("flags, body", EQUIVALENT, ids=[" ".join(f) or "defaults" for f, _ in EQUIVALENT])
def test_cli_and_api_resolve_equivalent_inputs_identically(flags: list[str], body: dict[str, Any]) -> None:
    assert cli_config(*flags) == api_config(**body)


def test_what_the_rules_decide() -> None:
    dig = {r["name"]: r for r in cli_config("--preset", "paper256", "--diggan-weight", "50")["regularizers"]}["diggan"]
    assert dig == {"name": "diggan", "weight": 50.0, "interval": SUGGESTED_REGULARIZERS["diggan"][1],
                   "params": {}, "scale_by_interval": True}  # alpha: DigGAN's own default
    sngan = {r["name"]: r for r in cli_config("--arch", "biggan", "--reg", "diggan:500")["regularizers"]}["diggan"]
    assert (sngan["interval"], sngan["scale_by_interval"]) == (4, False)  # the preset's cadence is kept
    cfg = cli_config("--kimg", "1", "--snapshot-kimg", "0.1")
    assert (cfg["tick_kimg"], cfg["snapshot_ticks"]) == (0.1, 1)  # snapshots more often than cpu-tiny's tick
    assert cli_config("--kimg", "0.1")["tick_kimg"] == 0.1  # one tick at least


def test_regularizer_defaults_are_defined_once() -> None:
    for name, (weight, interval) in SUGGESTED_REGULARIZERS.items():
        assert suggested_defaults(name) == (weight, interval)
        reg = default_regularizer(name)
        assert (reg.weight, reg.interval) == (weight, interval)
    assert DigGAN.params == get_preset("cpu-tiny").regularizer("diggan").params == {"alpha": DIGGAN_ALPHA}
    with pytest.raises(ConfigRequestError, match="unknown regularizer 'r3'; choose from"):
        default_regularizer("r3")


ERRORS = [
    (["--preset", "cpu-tiny", "--arch", "biggan"], {"preset": "cpu-tiny", "arch": "biggan"},
     "preset 'cpu-tiny' is a stylegan2 preset but arch is 'biggan'; drop one of them or use preset 'biggan-32'"),
    (["--tick-kimg", "0.001"], {"tick_kimg": 0.001}, "tick_kimg (0.001) must hold at least one minibatch"),
    (["--reg", "r2:1:1:alpha=2"], {"regularizers": [{"name": "diggan"}, {"name": "r2", "weight": 1, "interval": 1}]},
     None),  # the API's schema refuses the parameter itself (422 before resolving); the CLI's resolver does
    (["--preset", "biggan-32", "--reg", "gp1:10"], {"preset": "biggan-32", "regularizers": [{"name": "gp1", "weight": 10}]},
     "regularizer 'gp1' cannot be used with arch 'biggan'"),
]


@pytest.mark.parametrize("flags, body, message", ERRORS, ids=[" ".join(f) for f, _, _ in ERRORS])
def test_cli_and_api_refuse_with_the_same_message(flags: list[str], body: dict[str, Any], message: str | None) -> None:
    with pytest.raises(ConfigRequestError) as cli_err:
        cli_config(*flags)
    if message is None:
        assert "has no parameter 'alpha'" in str(cli_err.value)
        return
    with pytest.raises(JobConfigError) as api_err:
        api_config(**body)
    assert message in str(cli_err.value) and str(cli_err.value) == str(api_err.value)


def test_unknown_override_key_says_how_keys_are_spelled() -> None:
    with pytest.raises(ConfigRequestError, match="unknown config key 'network.chanel_base'.*dotted"):
        cli_config("--set", "network.chanel_base=4")


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_resolved_config_resolves_to_itself(name: str) -> None:
    cfg = resolve_train_config(TrainRequest(preset=name))
    assert resolve_train_config(TrainRequest(base=cfg)) == cfg


# ---------------------------------------------------------------- train --config FILE


def test_config_file_round_trip(tmp_path: Path, capsys) -> None:
    data = make_synthetic_dataset(tmp_path / "imgs", n=8, resolution=32, seed=0)
    first = tmp_path / "first"
    micro = ["--batch", "4", "--kimg", "0.008", "--tick-kimg", "0.004", "--snapshot-ticks", "2", "--seed", "7",
             "--reg", "lecam:0.3", "--set", "network.resolution=32", "--set", "network.channel_base=512",
             "--set", "network.channel_max=32", "--set", "num_grid=4", "--device", "cpu"]
    assert main(["train", "--data", str(data), "--out", str(first), *micro]) == 0, capsys.readouterr().err
    stored = json.loads((first / "config.json").read_text())

    again = tmp_path / "again"  # the stored config alone reproduces the run's config
    assert main(["train", "--data", str(data), "--out", str(again), "--config", str(first / "config.json"),
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    assert json.loads((again / "config.json").read_text()) == stored

    job = tmp_path / "job.json"  # a job record as GET /v1/jobs/{id} returns it
    job.write_text(json.dumps({"id": "job_1", "object": "job", "config": stored, "request": {"kimg": 0.008}}))
    assert config_to_dict(load_config_file(job)) == stored
    flags = ["--config", str(job), "--kimg", "0.016", "--r1-gamma", "0"]  # flags next to --config override it
    expected = {**stored, "kimg": 0.016, "regularizers": [r for r in stored["regularizers"] if r["name"] != "r1"]}
    assert cli_config(*flags) == expected


def test_config_file_errors_name_the_problem(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**config_to_dict(get_preset("cpu-tiny")), "network": {"resolutoin": 32}}))
    assert main(["train", "--data", "x", "--out", str(tmp_path / "o"), "--config", str(bad)]) == 2
    assert "unknown network fields: ['resolutoin']" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown TrainConfig fields: \\['kimgs'\\]"):
        config_from_dict({"kimgs": 1})
    with pytest.raises(ConfigRequestError, match="drop one of them"):
        cli_config("--config", str(_stored(tmp_path)), "--preset", "cpu-tiny")


def _stored(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config_to_dict(get_preset("cpu-tiny"))))
    return path
