"""Shipping a v2 run (utils.world.report select / ship): issue 26's rule and the files that travel.

The rule: the run is the one chosen on validation frames (choice.json), its test-frame report
exists, and every dictionary bar holds. Behaviour targets it misses do not stop it.
"""

from __future__ import annotations

import json

import pytest

from utils.world.bars import BARS, Row, rows_to_json, selection_score
from utils.world.report import RUN_FILES, select, ship

# what chapters 01-08 load, for a 4-layer model (written out by hand, not taken from the code):
DICTIONARIES = ([f"resid_pre_{l}" for l in range(4)] + ["resid_post_3"] + [f"attn_z_{l}" for l in range(4)]
                + [f"mlp_post_{l}" for l in range(4)] + [f"resid_pre_2_w{w}" for w in (64, 128, 256, 1024)]
                + [f"transcoder_{l}" for l in range(4)])


def _rows(value: float) -> dict:
    """Saved bars with every behaviour row at `value` (losses at 10 * value)."""
    rows = [Row(b, value * 10 if b.target.startswith("<=") else value, 200, (0.0, 1.0), 8) for b in BARS]
    return rows_to_json(rows)


def _run(tmp_path, name="run", dictionary_bars_pass=True):
    run = tmp_path / name
    (run / "tokenizer").mkdir(parents=True)
    (run / "tokenizer" / "tokenizer.json").write_text("{}")
    for d in DICTIONARIES:
        (run / "dictionaries" / d).mkdir(parents=True)
        (run / "dictionaries" / d / "cfg.json").write_text("{}")
    (run / "dictionaries" / "checkpoint_saes.pt").write_text("x")
    for f in RUN_FILES:
        (run / f).write_text("{}")
    (run / "config.json").write_text(json.dumps({"d_model": 128, "n_layers": 4, "n_heads": 4, "d_head": 32, "d_mlp": 512}))
    (run / "bars_heldout.json").write_text(json.dumps(_rows(0.5)))
    (run / "bars_test.json").write_text(json.dumps(_rows(0.4)))
    (run / "dictionary_bars.json").write_text(json.dumps([{"metric": "L0 resid_pre_0", "value": 16, "target": "",
                                                            "passed": dictionary_bars_pass}]))
    return run


def _choose(tmp_path, name="run"):
    choice = tmp_path / "choice.json"
    choice.write_text(json.dumps({"chosen": name}))
    return choice


def test_the_chosen_run_ships_without_checkpoints_even_when_it_misses_targets(tmp_path):
    files = ship(_run(tmp_path), dest=tmp_path / "shipped", choice=_choose(tmp_path))
    assert "model.pt" in files and "tokenizer/tokenizer.json" in files and "bars_test.json" in files
    assert "dictionaries/transcoder_0/cfg.json" in files and "dictionaries/mlp_post_3/cfg.json" in files
    assert not any("checkpoint" in f for f in files)


def test_a_run_not_chosen_on_validation_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not the run chosen on validation frames"):
        ship(_run(tmp_path), dest=tmp_path / "shipped", choice=_choose(tmp_path, "other"))
    with pytest.raises(FileNotFoundError, match="select"):
        ship(_run(tmp_path, "run2"), dest=tmp_path / "shipped", choice=tmp_path / "none.json")
    assert not (tmp_path / "shipped").exists()


def test_a_run_without_its_test_report_or_measurements_is_refused(tmp_path):
    run = _run(tmp_path)
    (run / "bars_test.json").unlink()
    with pytest.raises(FileNotFoundError, match="bars_test.json"):
        ship(run, dest=tmp_path / "shipped", choice=_choose(tmp_path))
    (run / "mechanisms.json").unlink()
    with pytest.raises(FileNotFoundError, match="mechanisms.json"):
        ship(run, dest=tmp_path / "shipped", choice=_choose(tmp_path))


def test_a_run_whose_dictionaries_miss_a_fidelity_bar_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="L0 resid_pre_0"):
        ship(_run(tmp_path, dictionary_bars_pass=False), dest=tmp_path / "shipped", choice=_choose(tmp_path))


def test_a_missed_concept_findability_row_is_reported_not_a_gate(tmp_path):
    run = _run(tmp_path)
    bars = json.loads((run / "dictionary_bars.json").read_text())
    bars.append({"metric": "concept number: resid_pre_1#260 (P=0.28, R=0.62)", "value": 0.38, "target": ">= 0.50",
                 "passed": False})
    (run / "dictionary_bars.json").write_text(json.dumps(bars))
    files = ship(run, dest=tmp_path / "shipped", choice=_choose(tmp_path))
    assert "dictionary_bars.json" in files


@pytest.mark.parametrize("absent", ["resid_pre_2_w64", "attn_z_3", "transcoder_2", "mlp_post_3"])
def test_a_run_without_every_dictionary_is_refused_naming_it(tmp_path, absent):
    run = _run(tmp_path)
    (run / "dictionaries" / absent / "cfg.json").unlink()
    with pytest.raises(FileNotFoundError, match=absent):
        ship(run, dest=tmp_path / "shipped", choice=_choose(tmp_path))


def test_select_chooses_the_best_validation_score_and_records_every_run(tmp_path):
    runs = [_run(tmp_path, f"seed{i}") for i in range(3)]
    (runs[1] / "bars_heldout.json").write_text(json.dumps(_rows(0.7)))
    for run in runs:
        (run / "train_info.json").write_text(json.dumps({"train_minutes": 1.0}))
    record = select(runs, choice=tmp_path / "choice.json")
    assert record["chosen"] == "seed1"
    assert set(record["runs"]) == {"seed0", "seed1", "seed2"}
    assert json.loads((tmp_path / "choice.json").read_text())["chosen"] == "seed1"


def test_selection_score_by_hand():
    """Two rows: top-1 0.425 against >= 0.85 counts 0.5; a loss of 2.0 against <= 1.0 counts 0.5;
    a row above its bar counts 1, never more."""
    bar = {b.key: b for b in BARS}
    rows = [Row(bar["p2"], 0.425, 1), Row(bar["p3_run_repeat_loss"], 2.0, 1)]
    assert selection_score(rows) == pytest.approx(0.5)
    rows = [Row(bar["p2"], 0.99, 1), Row(bar["p3_run_repeat_loss"], 0.1, 1), Row(bar["unk_natural"], 5.0, 1)]
    assert selection_score(rows) == pytest.approx(1.0)  # unk_natural is not a selection row
