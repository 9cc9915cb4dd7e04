"""Offline latent dashboards: one self-contained HTML page per latent of a course dictionary.

    from utils.dashboard import display_dashboard
    display_dashboard(load_dictionary("resid_pre_2"), 17)             # renders inline in Jupyter
    display_dashboard(sae, 17).save("latent_17.html")                  # a standalone page

A dashboard shows the latent's density and max activation, the planted concept it matches best
(our edge over a real model: we know the ground truth), its top activating contexts in the
held-out course corpus, a histogram of its non-zero activations, and a logit lens of its
decoder direction. Everything is plain HTML with inline styles: no SVG, no JavaScript, no
external URL, so it works offline, in static renderers, in untrusted notebooks, and keeps
notebooks small.

    from utils.dashboard import attention_patterns
    attention_patterns(pattern, str_tokens, ["0.2", "2.3"])      # circuitsvis, plus a static copy

`attention_patterns` shows circuitsvis's interactive view from the JavaScript bundled with the
package, and a plain HTML heatmap of the same patterns that stays when scripts cannot run.
"""

from __future__ import annotations

import html
import operator
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from utils.world.concepts import ConceptScores, LabelledCorpus, concept_scores, dictionary_activations

# What JupyterLab 4 shows for an output of an *untrusted* notebook (one executed headlessly, by
# the grader or nbconvert, then opened), measured in tests/test_untrusted_rendering.py:
#   text/html        sanitised: <script> removed (never run), <svg> removed (its <title> text
#                    stays), <iframe> removed, id="x" renamed data-jupyter-id="x"; divs, tables,
#                    classes, inline styles (display:flex, height, background), title attributes
#                    and <img> with data: URIs stay
#   image/svg+xml    nothing is shown (an unsafe renderer), or its text/plain if the bundle has one
#   application/javascript  not run: its text/plain is shown
#   image/png, text/markdown, text/plain  shown
#   application/vnd.plotly.v1+json  drawn by the plotly extension shipped in the plotly package
#                    (a "safe" renderer, ranked above text/html): plotly figures render untrusted
WINDOW = (10, 3)  # tokens shown before and after the max-activating token of an example
N_LOGITS = 10


def _world_of(dictionary):
    """The course world a dictionary was trained on (its metadata names it; v2, the world every
    chapter runs on, if it names none)."""
    from utils.world import world_named
    from utils.world import WORLD_NAME

    name = getattr(getattr(dictionary.cfg, "metadata", None), "model_name", None)
    return world_named(name) or world_named(WORLD_NAME)


@lru_cache(maxsize=2)
def _default_model(world):
    return world.load_model()


@dataclass
class DashboardData:
    """Everything a dashboard needs about one (dictionary, model, data), computed once.

    Activations are stored sparsely, grouped by latent (CSC-like), rather than as the dense
    (n_docs, n_ctx, d_sae) tensor: that is ~150 MB for a real dictionary and mostly zeros.
    """

    dictionary: object
    model: object
    data: LabelledCorpus
    scores: ConceptScores
    doc: torch.Tensor  # (nnz,) document of each non-zero activation, sorted by latent
    pos: torch.Tensor  # (nnz,) position in the document
    value: torch.Tensor  # (nnz,) activation
    offsets: torch.Tensor  # (d_sae + 1,) entries of latent k are offsets[k]:offsets[k+1]
    n_tokens: int  # real tokens (BOS and padding excluded, as in the concept scores)

    def latent(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s = slice(int(self.offsets[k]), int(self.offsets[k + 1]))
        return self.doc[s], self.pos[s], self.value[s]


_CACHE: dict[tuple[int, int, int], DashboardData] = {}  # holds references, so ids stay unique


def dashboard_data(dictionary, model, data: LabelledCorpus) -> DashboardData:
    """Activation statistics of every latent of `dictionary` on `data` (cached by identity)."""
    key = (id(dictionary), id(model), id(data))
    if key not in _CACHE:
        acts = dictionary_activations(model, dictionary, data.tokens)
        scores = concept_scores(acts, data)
        acts = acts * data.mask[..., None]  # BOS and padding are not examples of anything
        doc, pos, latent = (acts > 0).nonzero(as_tuple=True)
        value = acts[doc, pos, latent]
        latent, order = latent.sort(stable=True)
        offsets = torch.searchsorted(latent, torch.arange(acts.shape[-1] + 1))
        if len(_CACHE) >= 4:  # a few dictionaries at a time, so memory stays bounded
            del _CACHE[next(iter(_CACHE))]
        _CACHE[key] = DashboardData(dictionary, model, data, scores, doc[order], pos[order], value[order],
                                    offsets, int(data.mask.sum()))
    return _CACHE[key]


def residual_decoder(dictionary, model) -> torch.Tensor:
    """Decoder directions in the residual stream, shape (d_sae, d_model).

    Attention SAEs on hook_z decode into concatenated head outputs (mapped through W_O) and
    MLP SAEs on mlp.hook_post into neuron space (mapped through W_out); residual SAEs and
    transcoders already write to the residual stream.
    """
    hook = dictionary.cfg.metadata.hook_name
    layer = int(m.group(1)) if (m := re.match(r"blocks\.(\d+)\.", hook)) else None
    w_dec = dictionary.W_dec.detach()
    if hook.endswith("attn.hook_z"):
        w_o = model.W_O[layer].detach()  # (n_heads, d_head, d_model)
        return w_dec.reshape(len(w_dec), *w_o.shape[:2]).flatten(1) @ w_o.flatten(0, 1)
    if hook.endswith("mlp.hook_post"):
        return w_dec @ model.W_out[layer].detach()
    return w_dec


# -- HTML pieces ------------------------------------------------------------------------------

TOKEN_STYLE = "white-space:pre;padding:1px 0;border-radius:2px;font-family:ui-monospace,Menlo,Consolas,monospace"
BOX = "border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:8px 0"


def _token(text: str, style: str = "", title: str = "", cls: str = "tok") -> str:
    # white-space:pre keeps leading spaces: " Paris" after "in" reads as "in Paris".
    title = f' title="{html.escape(title)}"' if title else ""
    return f'<span class="{cls}" style="{TOKEN_STYLE};{style}"{title}>{html.escape(text)}</span>'


def _orange(fraction: float) -> str:
    return f"background:rgba(255,140,0,{max(0.0, min(1.0, fraction)):.2f})"


def _examples(d: DashboardData, k: int, n_examples: int) -> str:
    """Top activating contexts: one window per document (so examples differ), around its max token."""
    doc, pos, value = d.latent(k)
    row = torch.zeros(d.data.tokens.shape)  # this latent's activation on every token
    row[doc, pos] = value
    best: dict[int, int] = {}  # document -> its max-activating position, in decreasing activation
    for i in value.argsort(descending=True, stable=True).tolist():
        best.setdefault(int(doc[i]), int(pos[i]))
        if len(best) == n_examples:
            break
    return "".join(_window(d, row[doc_i], doc_i, p, value.max().item()) for doc_i, p in best.items())


def _window(d: DashboardData, acts: torch.Tensor, doc: int, p: int, top: float) -> str:
    real = d.data.mask[doc].nonzero().flatten()  # no BOS or padding in the window
    first, last = int(real[0]), int(real[-1])
    lo, hi = max(p - WINDOW[0], first), min(p + WINDOW[1], last)
    strings = d.model.tokenizer.convert_ids_to_tokens(d.data.tokens[doc, lo:hi + 1].tolist())
    spans = "".join(
        _token(s, _orange(a / top) + (";outline:2px solid #000" if j == p else ""), f"{a:.4g}",
               "tok max" if j == p else "tok")
        for j, s, a in zip(range(lo, hi + 1), strings, acts[lo:hi + 1].tolist())
    )
    dots = '<span style="color:#999">…</span>'
    return (f'<div style="display:flex;margin:3px 0"><span style="flex:0 0 5em;color:#666;font-size:90%">'
            f'{acts[p].item():.4g}</span><span style="flex:1">{dots if lo > first else ""}{spans}'
            f'{dots if hi < last else ""}</span></div>')


def _histogram(values: torch.Tensor, n_bins: int = 40, width: int = 360, height: int = 80) -> str:
    """Histogram of the non-zero activations as HTML bars (divs with inline styles).

    Not SVG: an untrusted notebook (executed headlessly, then opened) strips inline SVG, while
    plain divs with heights and background colours survive sanitisation (see the note on untrusted outputs above)."""
    top = values.max().item()
    counts = torch.histc(values, bins=n_bins, min=0, max=top).tolist()
    peak, bar_w = max(counts), width / n_bins
    bars = "".join(
        f'<div class="bar" title="{i * top / n_bins:.3g}–{(i + 1) * top / n_bins:.3g}: {int(c)}" '
        f'style="flex:0 0 {bar_w - 1:.1f}px;margin-right:1px;height:{max(c / peak * height, 1 if c else 0):.1f}px;'
        f'background:#f08c00"></div>'
        for i, c in enumerate(counts)
    )
    label = "color:#666;font-size:10px"
    return (f'<div class="histogram" role="img" aria-label="activation histogram" style="width:{width}px;margin-top:4px">'
            f'<div style="{label}">tallest bar: {int(peak)} tokens</div>'
            f'<div style="display:flex;align-items:flex-end;height:{height}px;border-bottom:1px solid #999">{bars}</div>'
            f'<div style="display:flex;justify-content:space-between;{label}"><span>0</span><span>activation</span>'
            f'<span>{top:.3g}</span></div></div>')


def _logit_list(cls: str, values: torch.return_types.topk, tokenizer, rgb: str) -> str:
    scale = values.values.abs().max().item() or 1.0
    items = "".join(
        f'<li style="margin:1px 0">{_token(s, f"background:rgba({rgb},{abs(v) / scale * 0.6:.2f})")} '
        f'<span style="color:#666;font-size:90%">{v:+.4g}</span></li>'
        for s, v in zip(tokenizer.convert_ids_to_tokens(values.indices.tolist()), values.values.tolist())
    )
    return f'<ol class="{cls}" style="margin:4px 0;padding-left:2em">{items}</ol>'


def _logit_lens(d: DashboardData, k: int) -> str:
    logits = residual_decoder(d.dictionary, d.model)[k] @ d.model.W_U.detach()
    column = '<div style="display:inline-block;vertical-align:top;margin-right:2em"><b>{}</b>{}</div>'
    top = _logit_list("top-logits", logits.topk(N_LOGITS), d.model.tokenizer, "30,110,255")
    bottom = _logit_list("bottom-logits", logits.topk(N_LOGITS, largest=False), d.model.tokenizer, "230,40,40")
    return column.format("top tokens", top) + column.format("bottom tokens", bottom)


def _concepts(d: DashboardData, k: int, n: int = 3) -> str:
    f1 = d.scores.f1[:, k]
    rows = "".join(
        f'<tr><td style="padding:0 1.5em 0 0">{html.escape(d.scores.concepts[c])}</td>'
        + "".join(f'<td style="padding:0 1.5em 0 0">{float(t[c, k]):.3f}</td>'
                  for t in (d.scores.precision, d.scores.recall, d.scores.f1))
        + "</tr>"
        for c in f1.argsort(descending=True, stable=True)[:n].tolist()  # first = best_concept on ties
    )
    head = "".join(f'<th style="text-align:left;padding:0 1.5em 0 0">{h}</th>'
                   for h in ("concept", "precision", "recall", "F1"))
    return (f'<table class="concepts" style="border-collapse:collapse;font-size:95%">'
            f'<tr style="color:#666">{head}</tr>{rows}</table>')


def _section(title: str, body: str) -> str:
    return f'<div style="{BOX}"><div style="font-weight:600;margin-bottom:4px">{title}</div>{body}</div>'


def _kind(dictionary) -> str:
    hook = dictionary.cfg.metadata.hook_name
    if getattr(dictionary.cfg.metadata, "hook_name_out", None):
        return f"transcoder {hook} → {dictionary.cfg.metadata.hook_name_out}"
    return f"{'attention' if hook.endswith('hook_z') else 'MLP' if 'mlp' in hook else 'residual'} SAE on {hook}"


# -- the dashboard ----------------------------------------------------------------------------


@dataclass
class Dashboard:
    """An HTML dashboard: shows itself in Jupyter, `.html` is a standalone page, `.save` writes it."""

    title: str
    body: str = field(repr=False)  # a plain-text repr of 40 kB of HTML helps nobody

    @property
    def html(self) -> str:
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f'</title></head><body style="margin:16px">{self.body}</body></html>')

    def _repr_html_(self) -> str:
        return self.body

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(self.html, encoding="utf-8")
        return path


def display_dashboard(dictionary, latent_idx: int, model=None, data: LabelledCorpus | None = None,
                      n_examples: int = 10) -> Dashboard:
    """Dashboard of latent `latent_idx` of an SAE or transcoder on the course world.

    `model` defaults to the course model and `data` to the held-out labelled corpus. Statistics are
    computed once per (dictionary, model, data), so showing more latents of it is fast.
    """
    d_sae = dictionary.cfg.d_sae
    k = operator.index(latent_idx)
    if not 0 <= k < d_sae:
        raise ValueError(f"latent_idx {k} is out of range: this dictionary has {d_sae} latents (0 to {d_sae - 1}).")
    world = _world_of(dictionary)  # a dictionary on another world's model would run without error, and mean nothing
    d = dashboard_data(dictionary, model if model is not None else _default_model(world),
                       data if data is not None else world.labelled_corpus())
    _, _, value = d.latent(k)
    header = (f'<div style="font-size:120%;font-weight:700">Latent {k}</div>'
              f'<div style="color:#444">{html.escape(_kind(dictionary))} · {d_sae} latents</div>')
    if len(value) == 0:
        sections = [_section("Activations", f"<p>Dead on this data: latent {k} never fires on the {d.n_tokens} "
                                            "tokens of the course corpus sample, so there are no examples, "
                                            "histogram or concept match to show.</p>")]
    else:
        stats = (f"density <b>{len(value) / d.n_tokens:.4%}</b> ({len(value)} of {d.n_tokens} tokens) · "
                 f"max activation <b>{value.max().item():.4g}</b>")
        concept = d.scores.best_concept(k)[0]
        sections = [
            _section("Activations", f"<div>{stats}</div>{_histogram(value)}"),
            _section(f"Best-matching planted concept: <code>{html.escape(concept)}</code>", _concepts(d, k)),
            _section("Top activating contexts (held-out course corpus; outlined: max token; hover: activation)",
                     _examples(d, k, n_examples)),
        ]
    sections.append(_section("Logit lens: decoder direction @ W_U (no final LayerNorm)", _logit_lens(d, k)))
    body = (f'<div class="latent-dashboard" style="font-family:system-ui,sans-serif;font-size:14px;color:#222;'
            f'max-width:900px">{header}{"".join(sections)}</div>')
    return Dashboard(f"Latent {k} · {dictionary.cfg.metadata.hook_name}", body)


# -- attention patterns (circuitsvis, with a static copy) -------------------------------------


@dataclass
class AttentionPatterns:
    """circuitsvis attention heads followed by a static HTML heatmap of the same patterns; a
    script removes the static copy wherever scripts run (so a trusted notebook shows circuitsvis
    only), and where they do not (an untrusted notebook) the heatmap is what is left."""

    circuitsvis_html: str = field(repr=False)
    static_html: str = field(repr=False)
    names: list[str] = field(default_factory=list)

    def _repr_html_(self) -> str:
        uid = f"cv-static-{uuid.uuid4().hex[:12]}"
        return (f'{self.circuitsvis_html}<div id="{uid}">{self.static_html}</div>'
                f'<script>(function () {{ var e = document.getElementById("{uid}"); if (e) e.remove(); }})();</script>')

    def __repr__(self) -> str:
        return f"AttentionPatterns(heads={self.names})"


def _heatmap(pattern: torch.Tensor, tokens: list[str], name: str, cell: int = 13) -> str:
    top = pattern.max().item() or 1.0
    head = "".join(f'<th title="{html.escape(t)}" style="width:{cell}px;font-weight:400;color:#888;font-size:8px;padding:0">'
                   f'{j}</th>' for j, t in enumerate(tokens))
    rows = []
    for i, t in enumerate(tokens):
        cells = "".join(
            f'<td class="attn" title="{html.escape(t)} ({i}) → {html.escape(tokens[j])} ({j}): {v:.3f}" style="width:{cell}px;'
            f'height:{cell}px;padding:0;border:1px solid #fff;background:rgba(31,119,180,{v / top:.2f})"></td>'
            for j, v in enumerate(pattern[i].tolist()))
        rows.append(f'<tr><th style="text-align:right;font-weight:400;padding:0 4px;white-space:pre;font-size:10px">'
                    f'{html.escape(t)} {i}</th>{cells}</tr>')
    return (f'<div style="display:inline-block;vertical-align:top;margin:0 16px 8px 0"><div style="font-weight:600">'
            f'head {html.escape(name)}</div><table style="border-collapse:collapse;font-family:ui-monospace,monospace">'
            f'<tr><th></th>{head}</tr>{"".join(rows)}</table></div>')


MAX_TABLE_TOKENS = 48  # longer sequences get a PNG heatmap: a table of n² cells grows too big


def _png(rgb: torch.Tensor) -> bytes:
    """A PNG file of an (h, w, 3) uint8 image (zlib only: no imaging library needed)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = rgb.shape
    rows = b"".join(b"\x00" + bytes(row.flatten().tolist()) for row in rgb)  # filter type 0 per row
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def _heatmap_image(pattern: torch.Tensor, tokens: list[str], name: str) -> str:
    """The pattern as a PNG in an <img> (data: URIs survive sanitisation), white to blue."""
    import base64

    weight = (pattern / (pattern.max().item() or 1.0)).clamp(0, 1)[..., None]
    rgb = (255 - weight * (255 - torch.tensor([31.0, 119.0, 180.0]))).round().to(torch.uint8)
    n, size = len(tokens), max(240, min(4 * len(tokens), 600))
    data = base64.b64encode(_png(rgb)).decode()
    return (f'<div style="display:inline-block;vertical-align:top;margin:0 16px 8px 0"><div style="font-weight:600">'
            f'head {html.escape(name)}</div><img class="attn-image" alt="attention pattern of head {html.escape(name)}" '
            f'width="{size}" height="{size}" style="image-rendering:pixelated;border:1px solid #ddd" '
            f'src="data:image/png;base64,{data}"><div style="color:#777;font-size:10px">{n} × {n}: row i attends to '
            f'column j (positions as in the token list below)</div></div>')


def attention_patterns(attention, tokens: list[str], head_names: list[str] | None = None,
                       **circuitsvis_kwargs) -> AttentionPatterns:
    """circuitsvis's `attention_heads` view of `attention` (n_heads, dest, src), from the JavaScript
    bundled with circuitsvis (no CDN), plus a static heatmap for notebooks that cannot run scripts
    (rows: the attending token, columns: the attended one; hover a cell for its value)."""
    import circuitsvis as cv

    attention = torch.as_tensor(attention).detach().float().cpu()
    if attention.ndim != 3 or attention.shape[1:] != (len(tokens), len(tokens)):
        raise ValueError(f"attention must have shape (n_heads, {len(tokens)}, {len(tokens)}) for {len(tokens)} "
                         f"tokens, got {tuple(attention.shape)}.")
    names = list(head_names) if head_names is not None else [str(h) for h in range(len(attention))]
    view = cv.attention.attention_heads(attention=attention, tokens=list(tokens), attention_head_names=names,
                                        **circuitsvis_kwargs)
    table = len(tokens) <= MAX_TABLE_TOKENS
    static = (f'<div class="attention-static" style="font-family:system-ui,sans-serif;font-size:12px">'
              f'<div style="color:#555;margin:4px 0">Attention patterns (a static copy; circuitsvis\'s interactive '
              f'view needs a trusted notebook). Rows attend to columns'
              f'{"; hover a cell for its value" if table else ""}.</div>'
              + "".join((_heatmap if table else _heatmap_image)(p, list(tokens), n) for p, n in zip(attention, names))
              + ("" if table else
                 '<div style="font-size:10px;color:#555;white-space:pre-wrap;font-family:ui-monospace,monospace">'
                 + html.escape(" ".join(f"{i}:{t!r}" for i, t in enumerate(tokens))) + "</div>")
              + "</div>")
    return AttentionPatterns(view.local_src, static, names)
