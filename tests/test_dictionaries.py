"""The shipped dictionaries: they load offline, have the layout COURSE.md §3.3 asks for, splice
into the model, and work as a circuit_tracer replacement model. (Their quality bars are measured
when a run ships, `python -m utils.world report`; tests/test_world_shipped.py checks the record.)"""

from __future__ import annotations

import json

import pytest
import torch

from utils.world.dictionaries import (
    DICT_DIR, available_dictionaries, load_dictionary, load_transcoders, load_width_family, replacement_model,
)

N_LAYERS = 4
TWO_HOP = "What is the capital of the state where Dallas is? It is"  # answer " Austin"


@pytest.fixture(scope="module")
def model():
    from utils.world import load_model

    return load_model()


def expected_layout() -> dict[str, tuple[str, str | None]]:
    """name -> (hook read, hook written) written out from COURSE.md §3.3, not from the trainer."""
    out = {}
    for l in range(N_LAYERS):
        out[f"resid_pre_{l}"] = (f"blocks.{l}.hook_resid_pre", None)
        out[f"attn_z_{l}"] = (f"blocks.{l}.attn.hook_z", None)
        out[f"transcoder_{l}"] = (f"blocks.{l}.ln2.hook_normalized", f"blocks.{l}.hook_mlp_out")
        out[f"mlp_post_{l}"] = (f"blocks.{l}.mlp.hook_post", None)  # every layer: chapter 07 reads MLPs 2-3
    out["resid_post_3"] = ("blocks.3.hook_resid_post", None)
    return out


def test_every_dictionary_is_shipped_with_its_hooks():
    names = set(available_dictionaries())
    for name, (hook_in, hook_out) in expected_layout().items():
        assert name in names, f"missing dictionary {name}"
        d = load_dictionary(name)
        assert d.cfg.metadata.hook_name == hook_in
        assert getattr(d.cfg.metadata, "hook_name_out", None) == hook_out


def test_dictionaries_load_with_sae_lens_directly():
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(DICT_DIR / "attn_z_1"))
    assert sae.cfg.d_in == 128 and sae.cfg.reshape_activations == "hook_z"
    tc = SAE.load_from_disk(str(DICT_DIR / "transcoder_2"))
    assert type(tc).__name__ == "JumpReLUTranscoder"


def test_per_layer_loaders_return_every_layer():
    from utils.world.dictionaries import load_attn_saes, load_resid_saes

    for loader, hook in [(load_resid_saes, "hook_resid_pre"), (load_attn_saes, "attn.hook_z"), (load_transcoders, "ln2.hook_normalized")]:
        by_layer = loader()
        assert sorted(by_layer) == list(range(N_LAYERS))
        assert all(d.cfg.metadata.hook_name == f"blocks.{l}.{hook}" for l, d in by_layer.items())


def test_width_family_has_five_or_more_widths():
    family = load_width_family(2)
    assert len(family) >= 5
    assert list(family) == sorted(family) and family[min(family)].cfg.d_sae < family[max(family)].cfg.d_sae


def test_missing_dictionary_gives_a_clear_message():
    with pytest.raises(FileNotFoundError, match="No course dictionary named 'resid_pre_9'.*Available"):
        load_dictionary("resid_pre_9")


def test_shipped_files_are_small():
    total = sum(p.stat().st_size for p in DICT_DIR.rglob("*") if p.is_file())
    assert total < 60e6, f"dictionaries take {total / 1e6:.1f} MB"


def test_sae_splices_into_the_model(model):
    sae = load_dictionary("resid_pre_2")
    tokens = model.to_tokens(TWO_HOP)
    clean = model(tokens)[0, -1]
    spliced = model.run_with_saes(tokens, saes=[sae])[0, -1]
    with_error = model.run_with_saes(tokens, saes=[sae], use_error_term=True)[0, -1]
    assert torch.allclose(with_error, clean, atol=1e-4)  # the error term makes it exact
    assert spliced.argmax() == clean.argmax()  # and the reconstruction alone keeps the answer


def test_replacement_model_matches_the_model_and_attributes(model):
    from circuit_tracer import attribute
    from circuit_tracer.graph import prune_graph

    rm = replacement_model(model)
    tokens = model.to_tokens(TWO_HOP)[0]
    # weights really were remapped: an unmapped MLP or unembedding would be random
    assert torch.allclose(rm(tokens[None]), model(tokens[None]), atol=1e-4)
    graph = attribute(tokens, rm, max_n_logits=5, desired_logit_prob=0.9, batch_size=128, verbose=False)
    # the most probable logit target is the answer, with its probability
    top = int(graph.logit_probabilities.argmax())
    assert graph.logit_targets[top].vocab_idx == model.tokenizer.convert_tokens_to_ids(" Austin")
    n_feat = len(graph.active_features)
    assert n_feat > 0 and graph.adjacency_matrix.shape[0] > n_feat
    pruned = prune_graph(graph, node_threshold=0.8, edge_threshold=0.98)
    assert 0 < int(pruned.node_mask.sum()) < graph.adjacency_matrix.shape[0]


def test_transcoder_set_encodes_like_sae_lens(model):
    from utils.world.dictionaries import transcoder_set

    tcs = load_transcoders()
    ts = transcoder_set(tcs)
    _, cache = model.run_with_cache("Tourists visit the Louvre in the city of", names_filter="blocks.1.ln2.hook_normalized")
    x = cache["blocks.1.ln2.hook_normalized"][0]
    assert torch.allclose(ts.encode_layer(x, 1), tcs[1].encode(x), atol=1e-5)


def test_dictionary_measurements_are_sane(model):
    # Independent of the bars: a spliced dictionary never beats the clean model by much.
    from utils.world.concepts import labelled_corpus
    from utils.world.dictionary_quality import dictionary_quality

    data = labelled_corpus(40)
    q = dictionary_quality(model, "resid_pre_2", load_dictionary("resid_pre_2"), data)
    assert 0.5 < q.explained_variance < 1 and 1 < q.l0 < 64 and q.ce_spliced >= q.ce_clean - 0.01


def test_last_layer_logprobs_rebuild_the_clean_model(model):
    # The KL term of the last transcoder's training rebuilds the logits from resid_mid + MLP output;
    # with the true MLP output they must be the model's own next-token distribution.
    from utils.world.train_dictionaries import last_layer_logprobs

    last = model.cfg.n_layers - 1
    names = (f"blocks.{last}.hook_resid_mid", f"blocks.{last}.hook_mlp_out")
    logits, cache = model.run_with_cache(TWO_HOP, names_filter=lambda n: n in names)
    rebuilt = last_layer_logprobs(model, cache[names[0]][0], cache[names[1]][0])
    assert torch.allclose(rebuilt, logits[0].log_softmax(-1), atol=1e-4)
    wrong = last_layer_logprobs(model, cache[names[0]][0], torch.zeros_like(cache[names[1]][0]))
    assert not torch.allclose(wrong, logits[0].log_softmax(-1), atol=1e-2)


def test_dictionary_training_refuses_the_shipped_folder(capsys):
    from utils.world.model import ARTIFACTS
    from utils.world.train_dictionaries import main as train_dicts

    for argv in (["--smoke"], ["--out", str(ARTIFACTS / "dictionaries" / "new")]):  # the default, and a subfolder
        with pytest.raises(SystemExit):  # argparse's error: one line, before any model is loaded
            train_dicts(argv)
        err = capsys.readouterr().err
        assert "inside the shipped artifacts" in err and "Traceback" not in err, err


def test_smoke_dictionary_training(tmp_path):
    from utils.world.train import train
    from utils.world.train_dictionaries import main as train_dicts

    train(tmp_path / "model", steps=2, batch_size=4, size="smoke", checkpoint_every=1, log_every=1)
    train_dicts(["--smoke", "--run", str(tmp_path / "model"), "--out", str(tmp_path / "dicts")])
    names = available_dictionaries(tmp_path / "dicts")
    assert {"resid_pre_0", "attn_z_1", "transcoder_1", "mlp_post_0", "mlp_post_1"} <= set(names)
    info = json.loads((tmp_path / "dicts" / "train_info.json").read_text())
    assert info["saes_training_tokens"] > 0 and info["transcoders_training_tokens"] > 0


def test_streamed_concept_scores_equal_the_whole_corpus_ones(model):
    from utils.world.concepts import concept_scores, dictionary_activations, labelled_corpus, streamed_concept_scores

    data = labelled_corpus(30)
    sae, tc = load_dictionary("attn_z_1"), load_dictionary("transcoder_2")
    streamed = streamed_concept_scores(model, {"a": sae, "t": tc}, data, batch_size=7, progress=False)
    for key, dictionary in (("a", sae), ("t", tc)):
        whole = concept_scores(dictionary_activations(model, dictionary, data.tokens), data)
        for field in ("precision", "recall", "f1", "density"):
            assert torch.allclose(getattr(streamed[key], field), getattr(whole, field), atol=1e-6), (key, field)
        assert whole.f1.max() > 0.1  # a real comparison, not two tensors of zeros
