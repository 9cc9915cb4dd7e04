"""Transcoder helpers shared by the chapters from 02 on.

    from utils.transcoders import run_with_cache_with_transcoder, reading_vector, show_top_tokens
    cache = run_with_cache_with_transcoder(model, [tcs[1], tcs[2]], tokens)
    acts = cache["blocks.1.ln2.hook_normalized.hook_sae_acts_post"]     # (batch, pos, d_sae)

A course transcoder reads `blocks.L.ln2.hook_normalized` (the residual stream after LayerNorm's
centring and scaling, before its weight and bias) and writes `blocks.L.hook_mlp_out`.
"""

from __future__ import annotations

import html
from typing import Callable, Sequence

import torch
from torch import Tensor

# ---------------------------------------------------------------------------------------------
# Running the model with transcoders


def hook_names(transcoder) -> tuple[str, str]:
    """(input hook, output hook) of a transcoder, e.g. ("blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out")."""
    meta = transcoder.cfg.metadata
    return meta.hook_name, meta.hook_name_out


def layer_of(transcoder) -> int:
    """The layer a transcoder replaces, read from its input hook name."""
    return int(hook_names(transcoder)[0].split(".")[1])


def acts_name(transcoder, kind: str = "hook_sae_acts_post") -> str:
    """Cache key of a transcoder quantity in `run_with_cache_with_transcoder`'s cache."""
    return f"{hook_names(transcoder)[0]}.{kind}"


def run_with_cache_with_transcoder(model, transcoders: Sequence, tokens: Tensor, use_error_term: bool = True,
                                   names_filter: Callable[[str], bool] | Sequence[str] | None = None,
                                   return_logits: bool = False):
    """Run `model` on `tokens` with transcoders hooked in; return an ActivationCache (and the logits first,
    as `(logits, cache)`, with `return_logits=True`).

    At each transcoder's input hook we encode the activations and keep the latent activations.
    With `use_error_term=True` (the default) the model itself is not changed: we only read the
    transcoders. With `use_error_term=False` each MLP's output is replaced by its transcoder's
    output, so later layers see the transcoders' reconstructions.

    The cache holds the model's activations (those allowed by `names_filter`, all by default) and,
    for every transcoder, `<input hook>.hook_sae_acts_pre`, `.hook_sae_acts_post` and `.hook_sae_output`.
    """
    from transformer_lens import ActivationCache

    found: dict[str, Tensor] = {}
    hooks = []
    for tc in transcoders:
        hook_in, hook_out = hook_names(tc)

        def read(acts: Tensor, hook, tc=tc, hook_in=hook_in):
            pre = tc.process_sae_in(acts) @ tc.W_enc + tc.b_enc
            post = tc.encode(acts)
            found[f"{hook_in}.hook_sae_acts_pre"] = pre
            found[f"{hook_in}.hook_sae_acts_post"] = post
            found[f"{hook_in}.hook_sae_output"] = tc.decode(post)
            return acts

        def write(acts: Tensor, hook, hook_in=hook_in):
            return found[f"{hook_in}.hook_sae_output"]

        hooks.append((hook_in, read))
        if not use_error_term:
            hooks.append((hook_out, write))
    if names_filter is not None and not callable(names_filter):
        wanted = set(names_filter)
        names_filter = wanted.__contains__
    with model.hooks(fwd_hooks=hooks):
        logits, cache = model.run_with_cache(tokens, names_filter=names_filter)
    cache = ActivationCache({**cache.cache_dict, **found}, model)
    return (logits, cache) if return_logits else cache


_RECENT: dict[tuple, tuple] = {}  # a few recent latent_activations results


@torch.no_grad()
def latent_activations(model, transcoder, tokens: Tensor, latent_idx: int, batch_size: int = 100,
                       progress: bool = False) -> Tensor:
    """Activations (n_docs, n_ctx) of one latent over `tokens`, running the model only up to its layer.

    The last few results are remembered (for the same model, transcoder, latent and tokens), so asking
    twice about one latent of the corpus costs one pass.
    """
    from tqdm.auto import tqdm

    key = (id(model), id(transcoder), latent_idx, id(tokens), batch_size)
    if key in _RECENT:  # the ids could have been reused: check the objects and the tokens
        old_model, old_transcoder, old_tokens, acts = _RECENT[key]
        if old_model is model and old_transcoder is transcoder and torch.equal(old_tokens, tokens):
            return acts.clone()
    hook, layer = hook_names(transcoder)[0], layer_of(transcoder)
    out = []
    for start in tqdm(range(0, len(tokens), batch_size), desc=f"latent {latent_idx}", disable=not progress, leave=False):
        _, cache = model.run_with_cache(tokens[start:start + batch_size], names_filter=[hook], stop_at_layer=layer + 1)
        out.append(transcoder.encode(cache[hook])[..., latent_idx])
    acts = torch.cat(out)
    if len(_RECENT) >= 4:
        del _RECENT[next(iter(_RECENT))]
    _RECENT[key] = (model, transcoder, tokens.clone(), acts)
    return acts.clone()


@torch.no_grad()
def standardise(x: Tensor, eps: float = 1e-5) -> Tensor:
    """What LayerNorm does before its weight and bias: centre each row, divide by its RMS (+eps)."""
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def reading_vector(transcoder, latent_idx: int) -> Tensor:
    """The direction latent `latent_idx` reads from the residual stream, shape (d_model,).

    The encoder column, centred: the transcoder reads LayerNorm's output, which is centred, so the
    component of the column along (1, 1, ..., 1) never matters. Centring it lets us take dot
    products with raw (uncentred) residual-stream vectors.
    """
    column = transcoder.W_enc[:, latent_idx].detach()
    return column - column.mean()


# ---------------------------------------------------------------------------------------------
# Tables


def top_tokens_table(model, scores: Tensor, k: int = 10, value_name: str = "Value") -> str:
    """A text table of the k lowest and k highest entries of a (d_vocab,) score vector."""
    from tabulate import tabulate

    scores = scores.detach().float()
    top, bottom = scores.topk(k), scores.topk(k, largest=False)
    rows = zip(map(repr, model.to_str_tokens(bottom.indices)), bottom.values.tolist(),
               map(repr, model.to_str_tokens(top.indices)), top.values.tolist())
    return tabulate(rows, headers=["Bottom tokens", value_name, "Top tokens", value_name], tablefmt="simple_outline",
                    stralign="right", numalign="left", floatfmt="+.3f")


def show_top_tokens(model, scores: Tensor, k: int = 10, title: str | None = None) -> None:
    """Print the table of `top_tokens_table`, under an optional title."""
    if title:
        print(title)
    print(top_tokens_table(model, scores, k))


def top_seqs_html(data: Sequence[tuple[float, list[str], int]], title: str = "Max activating examples") -> str:
    """An HTML table of (activation, window of string tokens, position of the max token) rows."""
    cell = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"
    rows = []
    for act, str_toks, seq_pos in data:
        spans = "".join(
            f'<span style="white-space:pre;{"background:#b2f2bb;font-weight:700;text-decoration:underline" if i == seq_pos else ""}">'
            f"{html.escape(tok)}</span>"
            for i, tok in enumerate(str_toks)
        )
        rows.append(f'<tr><td style="{cell};font-family:monospace">{act:.3f}</td>'
                    f'<td style="{cell};font-family:ui-monospace,monospace">{spans}</td></tr>')
    return (f'<table style="border-collapse:collapse;font-size:13px"><caption style="text-align:left;font-weight:600">'
            f'{html.escape(title)}</caption><tr><th style="{cell}">Act</th><th style="{cell}">Sequence</th></tr>'
            f'{"".join(rows)}</table>')


def top_seqs_text(data: Sequence[tuple[float, list[str], int]]) -> str:
    """The same rows as plain text, the max token in [[double brackets]]."""
    lines = []
    for act, str_toks, seq_pos in data:
        text = "".join(f"[[{t}]]" if i == seq_pos else t for i, t in enumerate(str_toks))
        lines.append(f"{act:8.3f}  {text!r}")
    return "\n".join(lines)


class HTMLWithText:
    """Shows HTML in Jupyter and plain text elsewhere (and in a notebook's text output)."""

    def __init__(self, html_text: str, plain: str):
        self.html_text, self.plain = html_text, plain

    def _repr_html_(self) -> str:
        return self.html_text

    def __repr__(self) -> str:
        return self.plain


# ---------------------------------------------------------------------------------------------
# Ground truth: finding latents by concept, and scoring hypotheses


def pick_blind_latent(scores: dict, concepts: Sequence[str] = ("estimate_number", "estimate"),
                      layers: Sequence[int] = (2, 3)) -> tuple[int, int]:
    """(layer, latent) for the blind case study, chosen without saying which concept it matches.

    `scores` is {layer: ConceptScores}. Among the latents of `layers` whose best-matching concept (by F1)
    is one of `concepts`, take the one with the highest F0.5 for it: F-score weighted towards precision,
    because a latent that fires *only* on its concept can be explained crisply, even if it does not fire
    on every instance of it.
    """
    best, best_score = None, -1.0
    for layer in layers:
        s = scores[layer]
        best_concept = s.f1.argmax(0)
        for concept in concepts:
            c = s.concepts.index(concept)
            p, r = s.precision[c], s.recall[c]
            f_half = 1.25 * p * r / (0.25 * p + r).clamp_min(1e-9)
            f_half = torch.where(best_concept == c, f_half, torch.zeros_like(f_half))
            latent = int(f_half.argmax())
            if float(f_half[latent]) > best_score:
                best, best_score = (layer, latent), float(f_half[latent])
    return best


def score_against(predicted: Tensor, target: Tensor) -> tuple[float, float, float]:
    """(precision, recall, F1) of a boolean prediction against a boolean target (same shape)."""
    predicted, target = predicted.bool(), target.bool()
    hits = (predicted & target).sum().item()
    precision = hits / max(predicted.sum().item(), 1)
    recall = hits / max(target.sum().item(), 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-9)


@torch.no_grad()
def score_hypothesis(hypothesis: Callable[[list[str]], list[bool]], model, transcoder, latent_idx: int, data,
                     layer_scores) -> dict | None:
    """Score a token-level hypothesis about a latent on the labelled corpus `data`; reveal its concept.

    Prints precision/recall/F1 of the hypothesis against (1) where the latent really fires and (2) the
    labels of the planted concept the latent matches best, and that concept with the latent's own scores.
    """
    acts = latent_activations(model, transcoder, data.tokens, latent_idx)[data.mask]
    fires = acts > 0
    predicted = []
    try:
        for doc, mask in zip(data.tokens, data.mask):
            str_tokens = model.to_str_tokens(doc[mask])
            answer = list(hypothesis(str_tokens))
            if len(answer) != len(str_tokens):
                print(f"hypothesis returned {len(answer)} values for a document of {len(str_tokens)} tokens: "
                      "return one bool per token.")
                return None
            predicted += [bool(a) for a in answer]
    except NotImplementedError:
        print("Write your hypothesis first: `hypothesis` still raises NotImplementedError.")
        return None
    predicted = torch.tensor(predicted)
    concept, c_precision, c_recall, c_f1 = layer_scores.best_concept(latent_idx)
    labels = data.labels[..., data.concept_index(concept)][data.mask]
    result = {
        "vs latent": score_against(predicted, fires),
        "concept": concept,
        "latent vs concept": (c_precision, c_recall, c_f1),
        "vs concept": score_against(predicted, labels),
        # recall counts a faint activation like a strong one; this weighs them by size
        "activation share": acts[predicted].sum().item() / max(acts.sum().item(), 1e-9),
    }
    p, r, f = result["vs latent"]
    print(f"hypothesis vs where the latent fires:  precision {p:.2f}, recall {r:.2f}, F1 {f:.2f}")
    print(f"share of the latent's total activation on the tokens you picked: {result['activation share']:.2f}")
    print(f"the latent's best-matching planted concept: {concept!r} "
          f"(latent vs concept: precision {c_precision:.2f}, recall {c_recall:.2f}, F1 {c_f1:.2f})")
    p, r, f = result["vs concept"]
    print(f"hypothesis vs the concept's labels:     precision {p:.2f}, recall {r:.2f}, F1 {f:.2f}")
    return result
