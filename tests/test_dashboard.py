"""The offline latent dashboard (utils/dashboard.py) on the shipped course world (v2).

Content tests compare what the page shows with quantities computed here directly (run_with_cache
+ encode, W_dec @ W_U); the browser test opens the saved page in headless Chromium and checks
that it renders without a single network request.
"""

from __future__ import annotations

import copy
import html
import re

import pytest
import torch

from browser import chromium, non_local
from utils.dashboard import dashboard_data, display_dashboard
from utils.world import labelled_corpus, load_dictionary, load_model

DICTIONARIES = ("resid_pre_2", "attn_z_1", "transcoder_2")  # a residual SAE, an attention SAE, a transcoder
N_DOCS = 80  # a slice of the held-out corpus keeps the tests quick


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def data():
    return labelled_corpus(N_DOCS)


@pytest.fixture(scope="module", params=DICTIONARIES)
def dictionary(request):
    return load_dictionary(request.param)


def reference_acts(model, dictionary, data) -> torch.Tensor:
    """(n_docs, n_ctx, d_sae) activations on real tokens only (BOS and padding zeroed)."""
    hook = dictionary.cfg.metadata.hook_name
    with torch.no_grad():
        _, cache = model.run_with_cache(data.tokens, names_filter=hook)
        return dictionary.encode(cache[hook]) * data.mask[..., None]


def reference_logits(model, dictionary, k: int) -> torch.Tensor:
    """Logit lens of latent k, mapping the decoder row to the residual stream by hand."""
    hook = dictionary.cfg.metadata.hook_name
    row = dictionary.W_dec[k].detach()
    if hook.endswith("attn.hook_z"):
        layer = int(hook.split(".")[1])
        row = torch.einsum("hd,hdm->m", row.reshape(model.cfg.n_heads, model.cfg.d_head), model.W_O[layer])
    assert row.shape == (model.cfg.d_model,)
    return (row @ model.W_U).detach()


def shown_tokens(page: str, cls: str) -> list[str]:
    """Texts of the token spans with class `cls`, in page order, unescaped."""
    return [html.unescape(t) for t in re.findall(rf'<span class="{cls}"[^>]*>(.*?)</span>', page)]


def logit_list(page: str, cls: str) -> list[str]:
    (block,) = re.findall(rf'<ol class="{cls}".*?</ol>', page, flags=re.S)
    return shown_tokens(block, "tok")


@pytest.fixture(scope="module")
def case(model, data, dictionary):
    """The latent with the largest single activation, its reference numbers and its dashboard."""
    acts = reference_acts(model, dictionary, data)
    flat = int(acts.argmax())
    doc, pos, k = torch.unravel_index(torch.tensor(flat), acts.shape)
    return dict(k=int(k), doc=int(doc), pos=int(pos), acts=acts[..., int(k)], dictionary=dictionary,
                page=display_dashboard(dictionary, int(k), model=model, data=data).html)


def test_header_shows_latent_density_and_max(case, data):
    page, fires = case["page"], case["acts"] > 0
    assert f"Latent {case['k']}<" in page
    assert case["dictionary"].cfg.metadata.hook_name in page
    assert f"{int(fires.sum())} of {int(data.mask.sum())} tokens" in page
    assert f"max activation <b>{case['acts'].max().item():.4g}</b>" in page


def test_top_context_is_the_max_activating_token(case, model, data):
    # Any token within float noise of the max counts (batching may reorder near-ties).
    near_max = case["acts"] >= case["acts"].max() * (1 - 1e-5)
    expected = set(model.tokenizer.convert_ids_to_tokens(data.tokens[near_max].tolist()))
    outlined = shown_tokens(case["page"], "tok max")
    assert outlined[0] in expected
    assert 1 <= len(outlined) <= 10  # one example per document, at most n_examples
    title = re.search(r'<span class="tok max"[^>]*title="([^"]+)"', case["page"]).group(1)
    assert float(title) == pytest.approx(case["acts"].max().item(), rel=1e-3)


def test_best_concept_matches_a_direct_computation(case, data):
    fires = case["acts"][data.mask] > 0
    labels = data.labels[data.mask]
    true_pos = (labels & fires[:, None]).sum(0).float()
    precision, recall = true_pos / fires.sum(), true_pos / labels.sum(0).clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-9)
    table = re.search(r'<table class="concepts".*?</table>', case["page"], flags=re.S).group(0)
    name, *numbers = re.findall(r"<td[^>]*>(.*?)</td>", table)[:4]
    c = data.concepts.index(html.unescape(name))
    assert f1[c] == pytest.approx(f1.max().item(), abs=1e-6)  # the best match (or tied with it)
    assert numbers == [f"{precision[c]:.3f}", f"{recall[c]:.3f}", f"{f1[c]:.3f}"]
    assert f"<code>{name}</code>" in case["page"]


def test_logit_lens_matches_decoder_times_unembedding(case, model):
    logits = reference_logits(model, case["dictionary"], case["k"])
    ids = {tok: i for tok, i in model.tokenizer.get_vocab().items()}
    for cls, expected in (("top-logits", logits.topk(10)), ("bottom-logits", logits.topk(10, largest=False))):
        shown = logits[[ids[tok] for tok in logit_list(case["page"], cls)]]
        assert torch.allclose(shown, expected.values, atol=1e-5), cls  # same tokens, same order, up to ties


def test_page_is_self_contained_and_escaped(case, model):
    page = case["page"]
    for external in ("http://", "https://", "//cdn", "<script", "<link", "@import", "url(", "<iframe"):
        assert external not in page.lower(), external
    vocab = set(model.tokenizer.get_vocab())
    for raw in re.findall(r'<span class="tok[^"]*"[^>]*>(.*?)</span>', page):
        assert not set('<>"') & set(raw), raw  # token text is escaped ...
        assert html.unescape(raw) in vocab  # ... and round-trips to a real token


def test_dead_latent_and_bad_index(model, data):
    sae = copy.deepcopy(load_dictionary(DICTIONARIES[0]))
    with torch.no_grad():
        sae.W_enc[:, 0] = 0
        sae.b_enc[0] = -1.0  # pre-activation -1 everywhere: never above the (positive) threshold
    page = display_dashboard(sae, 0, model=model, data=data).html
    assert "never fires" in page and "top-logits" in page
    with pytest.raises(ValueError, match="out of range"):
        display_dashboard(sae, sae.cfg.d_sae, model=model, data=data)
    with pytest.raises(ValueError, match="out of range"):
        display_dashboard(sae, -1, model=model, data=data)


def test_defaults_caching_and_outputs(tmp_path):
    sae = load_dictionary(DICTIONARIES[0])
    board = display_dashboard(sae, 1)  # the course model and the default held-out corpus
    again = display_dashboard(sae, 2)
    assert "Latent 1<" in board._repr_html_() and "<html" not in board._repr_html_()
    assert board.html.startswith("<!DOCTYPE html>") and "Latent 2<" in again.html
    from utils.dashboard import _default_model, _world_of

    world = _world_of(sae)
    assert dashboard_data(sae, _default_model(world), labelled_corpus()) is dashboard_data(sae, _default_model(world),
                                                                                             labelled_corpus())
    path = board.save(tmp_path / "latent.html")
    assert path.read_text(encoding="utf-8") == board.html


def test_renders_offline_in_headless_chromium(model, data, tmp_path):
    sae = load_dictionary(DICTIONARIES[0])
    k = int(dashboard_data(sae, model, data).scores.density.argmax())
    path = display_dashboard(sae, k, model=model, data=data).save(tmp_path / "latent.html")
    with chromium(tmp_path, width=1000, height=800) as (context, requests):
        page = context.new_page()
        page.goto(path.as_uri(), wait_until="load")
        text = page.inner_text("body")
        bars = page.evaluate("Array.from(document.querySelectorAll('.histogram .bar'))"
                             ".map(b => b.getBoundingClientRect().height)")
        shot = page.screenshot(path=str(tmp_path / "latent.png"), full_page=True)
    assert f"Latent {k}" in text and "Logit lens" in text and "Top activating contexts" in text
    assert len(bars) == 40 and max(bars) == pytest.approx(80, abs=1) and sum(h > 0 for h in bars) >= 2
    assert len(shot) > 10_000  # a real picture, not a blank page
    assert requests and not non_local(requests), requests


def test_histogram_bars_are_the_counts_of_the_nonzero_activations(model, data):
    sae = load_dictionary(DICTIONARIES[0])
    acts = reference_acts(model, sae, data)
    k = int((acts > 0).sum((0, 1)).argmax())  # the densest latent: many bins filled
    values = acts[..., k][acts[..., k] > 0]
    page = display_dashboard(sae, k, model=model, data=data).html
    shown = [(float(lo), float(hi), int(n)) for lo, hi, n in
             re.findall(r'<div class="bar" title="([\d.e+-]+)–([\d.e+-]+): (\d+)"', page)]
    assert len(shown) == 40 and sum(n for *_, n in shown) == len(values)
    edges = torch.linspace(0, values.max().item(), 41)
    for i, (lo, hi, n) in enumerate(shown):  # bin i holds the values in [edge i, edge i+1)
        assert (lo, hi) == (pytest.approx(edges[i].item(), rel=6e-3, abs=1e-3),
                            pytest.approx(edges[i + 1].item(), rel=6e-3, abs=1e-3))  # 3 digits
        inside = int(((values >= edges[i]) & (values < edges[i + 1])).sum()) + (i == 39) * int((values == edges[-1]).sum())
        assert abs(n - inside) <= 1, (i, n, inside)  # ±1: a value on a bin edge may round either way
    heights = [float(h) for h in re.findall(r'class="bar"[^>]*height:([\d.]+)px', page)]
    peak = max(n for *_, n in shown)
    assert heights == [pytest.approx(max(n / peak * 80, 1 if n else 0), abs=0.06) for *_, n in shown]
    assert "<svg" not in page  # an untrusted notebook strips inline SVG (tests/test_untrusted_rendering.py)


def test_attention_patterns_static_copy_is_the_pattern():
    from utils.dashboard import attention_patterns

    pattern = torch.tensor([[[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.2, 0.3, 0.5]],
                            [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    view = attention_patterns(pattern, ["A", " b", "<c>"], ["0.1", "2.3"])
    page = view._repr_html_()
    assert "circuits-vis-" in page and "http" not in view.circuitsvis_html.split("<script")[0]
    cells = re.findall(r'<td class="attn" title="([^"]*)" style="[^"]*background:rgba\(31,119,180,([\d.]+)\)"', page)
    assert len(cells) == 18
    # head 0, row " b" (1), column "A" (0): 0.25 of a maximum of 1
    assert cells[3] == (f" b (1) → A (0): 0.250", "0.25")
    assert [float(a) for _, a in cells[9:]] == pattern[1].flatten().tolist()
    assert "&lt;c&gt;" in page and "<c>" not in page.split("<script")[0] + page.split("</script>")[-1]
    assert page.count('id="cv-static-') == 1 and "e.remove()" in page  # gone wherever scripts run
    with pytest.raises(ValueError, match=r"shape \(n_heads, 3, 3\)"):
        attention_patterns(pattern[0], ["A", " b", "<c>"])


def _png_pixels(data: bytes) -> torch.Tensor:
    """(h, w, 3) pixels of an 8-bit RGB PNG whose rows all use filter 0 (what the dashboard writes)."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = {}, 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        kind = data[i + 4:i + 8]
        chunks[kind] = chunks.get(kind, b"") + data[i + 8:i + 8 + length]
        assert struct.unpack(">I", data[i + 8 + length:i + 12 + length])[0] == zlib.crc32(kind + data[i + 8:i + 8 + length])
        i += 12 + length
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[r * (3 * w + 1):(r + 1) * (3 * w + 1)] for r in range(h)]
    assert all(row[0] == 0 for row in rows)
    return torch.tensor([list(row[1:]) for row in rows], dtype=torch.uint8).reshape(h, w, 3)


def test_attention_patterns_of_long_sequences_are_a_png():
    import base64

    from utils.dashboard import MAX_TABLE_TOKENS, attention_patterns

    n = MAX_TABLE_TOKENS + 2
    pattern = torch.softmax(torch.randn(1, n, n, generator=torch.Generator().manual_seed(0)), -1).tril()
    view = attention_patterns(pattern, [f" t{i}" for i in range(n)], ["1.0"])
    page = view.static_html
    assert 'class="attn"' not in page  # no n² table
    (data,) = re.findall(r'<img class="attn-image"[^>]*src="data:image/png;base64,([^"]+)"', page)
    pixels = _png_pixels(base64.b64decode(data))
    assert pixels.shape == (n, n, 3)
    # white for 0, (31, 119, 180) for the largest weight, linear in between
    share = pattern[0] / pattern[0].max()
    expected_blue_channel = 255 - share * (255 - 180)
    assert (pixels[..., 2].float() - expected_blue_channel).abs().max() <= 0.5
    assert tuple(pixels[0, n - 1].tolist()) == (255, 255, 255)  # masked upper triangle
    assert html.escape(f"{n - 1}:' t{n - 1}'") in page  # the token list under the images


def test_the_default_model_and_data_follow_the_world_a_dictionary_names():
    """A dictionary must be run on the model of the world it names (another world's model has the same
    shapes and would raise no error); a dictionary that names no course world gets world v2."""
    from types import SimpleNamespace

    import utils.world
    from utils.dashboard import _world_of
    from utils.world import world_named

    def named(name):
        return SimpleNamespace(cfg=SimpleNamespace(metadata=SimpleNamespace(model_name=name)))

    assert _world_of(load_dictionary(DICTIONARIES[0])) is utils.world
    assert _world_of(named("course-world-v2")) is utils.world
    assert _world_of(named("gpt2")) is utils.world  # unnamed worlds: the world the chapters run on
    assert world_named("course-world-v2") is utils.world and world_named("course-world") is None  # v1 is gone
