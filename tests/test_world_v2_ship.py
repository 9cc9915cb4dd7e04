"""Shipping a v2 run (utils.world.v2.report ship): the landing rule and the files that travel."""

from __future__ import annotations

import json

import pytest

from utils.world.v2.bars import V1_ON_NEW_FRAMES
from utils.world.v2.report import RUN_FILES, ship

# what chapters 01-05 load, for a 4-layer model (written out by hand, not taken from the code)
DICTIONARIES = ([f"resid_pre_{l}" for l in range(4)] + ["resid_post_3"] + [f"attn_z_{l}" for l in range(4)]
                + ["mlp_post_0", "mlp_post_1"] + [f"resid_pre_2_w{w}" for w in (64, 128, 256, 1024)]
                + [f"transcoder_{l}" for l in range(4)])


def _run(tmp_path, bars: dict):
    run = tmp_path / "run"
    (run / "tokenizer").mkdir(parents=True)
    (run / "tokenizer" / "tokenizer.json").write_text("{}")
    for name in DICTIONARIES:
        (run / "dictionaries" / name).mkdir(parents=True)
        (run / "dictionaries" / name / "cfg.json").write_text("{}")
    (run / "dictionaries" / "checkpoint_saes.pt").write_text("x")
    for name in RUN_FILES:
        (run / name).write_text("{}")
    (run / "config.json").write_text(json.dumps({"d_model": 128, "n_layers": 4, "n_heads": 4, "d_head": 32, "d_mlp": 512}))
    (run / "bars.json").write_text(json.dumps(bars))
    return run


def _better_than_v1():
    return {k: (v - 0.1 if k.startswith("p3") else v + 0.1) for k, v in V1_ON_NEW_FRAMES.items()}


def test_a_run_better_than_v1_ships_without_checkpoints(tmp_path):
    files = ship(_run(tmp_path, _better_than_v1()), dest=tmp_path / "shipped")
    assert "model.pt" in files and "tokenizer/tokenizer.json" in files
    assert "dictionaries/transcoder_0/cfg.json" in files
    assert not any("checkpoint" in f for f in files)


@pytest.mark.parametrize("row", ["p6_two_hop", "p3_sentence_ratio"])
def test_a_run_worse_than_v1_on_one_row_is_refused_naming_it(tmp_path, row):
    bars = _better_than_v1()
    bars[row] = V1_ON_NEW_FRAMES[row]  # a tie is not better
    with pytest.raises(ValueError, match=row):
        ship(_run(tmp_path, bars), dest=tmp_path / "shipped")
    assert not (tmp_path / "shipped").exists()


def test_an_unmeasured_or_incomplete_run_is_refused(tmp_path):
    run = _run(tmp_path, _better_than_v1())
    (run / "mechanisms.json").unlink()
    with pytest.raises(FileNotFoundError, match="mechanisms.json"):
        ship(run, dest=tmp_path / "shipped")
    (run / "bars.json").unlink()
    with pytest.raises(FileNotFoundError, match="measure the run first"):
        ship(run, dest=tmp_path / "shipped")


@pytest.mark.parametrize("absent", ["resid_pre_2_w64", "attn_z_3", "transcoder_2"])
def test_a_run_without_every_dictionary_is_refused_naming_it(tmp_path, absent):
    run = _run(tmp_path, _better_than_v1())
    (run / "dictionaries" / absent / "cfg.json").unlink()
    with pytest.raises(FileNotFoundError, match=absent):
        ship(run, dest=tmp_path / "shipped")
