"""The shipped world (utils/world/artifacts): it loads offline, matches the code's corpus, and
carries the measurements issue 26 asks for (test and validation rows with intervals, every
dictionary bar met, the mechanism figures), for the run chosen on validation frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


import utils.world as world
from utils.world.bars import BARS, rows_from_json
from utils.world.report import CHOICE, required_dictionaries
from utils.world.tokenizer import check_tokenizer_matches_corpus

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_run_is_the_one_chosen_on_validation_frames():
    choice = json.loads(CHOICE.read_text())
    assert len(choice["runs"]) >= 3  # issue 26: at least three full runs
    chosen = choice["runs"][choice["chosen"]]
    shipped_info = json.loads((world.ARTIFACTS / "train_info.json").read_text())
    assert shipped_info == chosen["train_info"]
    assert chosen["score"] == max(r["score"] for r in choice["runs"].values())
    # the validation rows that chose it are the ones shipped
    assert json.loads((world.ARTIFACTS / "bars_heldout.json").read_text()) == chosen["validation"]


def test_the_shipped_model_and_tokenizer_load_offline_and_match_the_corpus():
    model = world.load_model()
    assert model.cfg.model_name == world.WORLD_NAME
    check_tokenizer_matches_corpus()  # raises if the frames changed since shipping
    assert model.cfg.d_vocab == len(world.load_tokenizer())
    ids = model.to_tokens("What is the capital of Texas?")
    assert world.load_tokenizer().unk_token_id not in ids[0].tolist()


def test_every_dictionary_the_chapters_load_is_shipped_and_loads():
    names = required_dictionaries(world.ARTIFACTS)
    assert {f"mlp_post_{layer}" for layer in range(4)} <= set(names)
    for name in names:
        d = world.load_dictionary(name)
        assert d.cfg.metadata.model_name == world.WORLD_NAME, name
    assert len(world.load_transcoders()) == 4


def test_the_shipped_measurements_are_complete():
    for split in ("heldout", "test"):
        rows = {r.bar.key: r for r in rows_from_json(json.loads((world.ARTIFACTS / f"bars_{split}.json").read_text()))}
        assert set(rows) == {b.key for b in BARS}, split
        for key in ("p2", "p6_two_hop", "p7_top1", "p8", "p9", "p10", "p11"):
            assert rows[key].frames >= (8 if split == "test" else 2) and rows[key].ci is not None, (split, key)
    from utils.world.report import is_findability_bar

    bars = json.loads((world.ARTIFACTS / "dictionary_bars.json").read_text())
    assert bars and all(b["passed"] for b in bars if not is_findability_bar(b["metric"]))
    mech = json.loads((world.ARTIFACTS / "mechanisms.json").read_text())
    assert mech["split"] == "test"
    assert {"circuits", "model", "head_locality", "bios"} <= set(mech)


def test_the_world_report_command_shows_the_shipped_rows():
    out = subprocess.run([sys.executable, "-m", "utils.world", "report"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TEST frames" in out.stdout and "validation" in out.stdout and "dictionaries:" in out.stdout
    assert "P7 IOI top-1 is the indirect object" in out.stdout
