"""Chapter 06's checks against wrong implementations: each must fail with the message meant for it;
correct alternatives the text allows must pass.

(That the reference solutions pass every check is tested for all chapters in test_chapter_checks.py.)
"""

from __future__ import annotations

import math

import pytest
import torch

import solutions.ch06_circuit_autointerp as ref
from check_helpers import fails_with
from utils import course


@pytest.fixture(scope="module")
def checks06():
    return course.load_checks("06_circuit_autointerp")


def passes(check, fn) -> None:
    check(fn)  # raises CheckFailed on failure


# -------------------------------------------------------------------------------------------------
# feature_scores


def scores_variant(*, hook=None, pre=False, relu_only=False, no_transpose=False):
    def feature_scores(model, dictionary, tokens, latents, batch_size=32):
        name = dictionary.cfg.metadata.hook_name
        if hook == "out":
            name = getattr(dictionary.cfg.metadata, "hook_name_out", None) or name
        _, cache = model.run_with_cache(tokens)
        x = cache[name]
        if pre or relu_only:
            x = x.flatten(-2) if x.dim() == 4 else x
            shift = dictionary.b_dec if dictionary.cfg.apply_b_dec_to_input else 0.0
            h = (x - shift) @ dictionary.W_enc + dictionary.b_enc
            acts = h.relu() if relu_only else h
        else:
            acts = dictionary.encode(x)
        acts = acts[..., latents]
        return acts if no_transpose else acts.transpose(1, 2)

    return feature_scores


@pytest.mark.parametrize("variant, message", [
    (scores_variant(pre=True), "these are pre-activations: use dictionary.encode"),
    (scores_variant(relu_only=True), "a JumpReLU also zeroes activations below its threshold"),
    (scores_variant(hook="out"), "a transcoder reads blocks.1.ln2.hook_normalized (its input), not blocks.1.hook_mlp_out"),
    (scores_variant(no_transpose=True), "put the latents in the middle: (batch, latent, pos)"),
])
def test_wrong_feature_scores(checks06, variant, message):
    fails_with(checks06.test_feature_scores, variant, "feature_scores(", message)


def test_feature_scores_without_batches_passes(checks06):
    """Running the whole batch at once, and past the dictionary's layer, is slower but right."""
    passes(checks06.test_feature_scores, scores_variant())


def test_the_world_case_uses_every_kind_of_dictionary():
    w = course.load_checks("06_circuit_autointerp")._world()
    hooks = {w.tc[1].cfg.metadata.hook_name, w.attn[2].cfg.metadata.hook_name, w.resid.cfg.metadata.hook_name}
    assert hooks == {"blocks.1.ln2.hook_normalized", "blocks.2.attn.hook_z", "blocks.3.hook_resid_pre"}


# -------------------------------------------------------------------------------------------------
# top_examples_of_set


def by_tokens(scores, k):
    summed = scores.sum(1)
    flat = summed.flatten().topk(k)
    return [(int(i) // summed.shape[1], int(i) % summed.shape[1], float(v)) for v, i in zip(flat.values, flat.indices)]


def first_latent(scores, k):
    return ref.top_examples_of_set(scores[:, :1], k)


def by_max(scores, k):
    best, pos = scores.max(1).values.max(1)
    return [(int(d), int(pos[d]), float(best[d])) for d in best.argsort(descending=True)[:k]]


def ascending(scores, k):
    summed = scores.sum(1)
    best, pos = summed.max(1)
    return [(int(d), int(pos[d]), float(best[d])) for d in best.argsort()[:k]]


@pytest.mark.parametrize("variant, message", [
    (by_tokens, "at most one example per document"),
    (first_latent, "sum the scores over all the latents of the set"),
    (by_max, "the *sum* of its latents' scores at a token, not their maximum"),
    (ascending, "largest first"),
])
def test_wrong_top_examples_of_set(checks06, variant, message):
    fails_with(checks06.test_top_examples_of_set, variant, "top_examples_of_set(hand case", message)


def test_top_examples_with_loops_passes(checks06):
    def loops(scores, k):
        rows = []
        for d in range(scores.shape[0]):
            sums = scores[d].sum(0)
            p = int(sums.argmax())
            rows.append((d, p, float(sums[p])))
        return sorted(rows, key=lambda r: -r[2])[:k]

    passes(checks06.test_top_examples_of_set, loops)


def test_the_hand_top_examples():
    """Doc 1's best token moves because of a negative score; doc 3's best beats its second token."""
    got = ref.top_examples_of_set(course.load_checks("06_circuit_autointerp").TOY_SCORES, 4)
    assert [g[:2] for g in got] == [(1, 1), (3, 0), (0, 3), (2, 2)]
    assert [round(g[2], 4) for g in got] == [2.9, 2.2, 1.4, 0.1]


# -------------------------------------------------------------------------------------------------
# boosted_tokens


def boosted_variant(*, w_o="z", centre=True, first_only=False, scale=True):
    def boosted_tokens(model, pairs, k=10, strength=1.0):
        direction = torch.zeros(model.cfg.d_model)
        for dictionary, latent in (pairs[:1] if first_only else pairs):
            row = dictionary.W_dec[latent] * (strength if scale else 1.0)
            is_z = dictionary.cfg.metadata.hook_name.endswith("hook_z")
            if (w_o == "z" and is_z) or w_o == "all":
                layer = int(dictionary.cfg.metadata.hook_name.split(".")[1])
                row = torch.einsum("hd,hdm->m", row.reshape(model.cfg.n_heads, model.cfg.d_head), model.W_O[layer])
            direction = direction + row
        if centre:
            direction = direction - direction.mean()
        values, ids = (direction @ model.W_U).topk(k)
        return ids, values

    return boosted_tokens


@pytest.mark.parametrize("variant, message", [
    (boosted_variant(w_o="none"), "a z-latent's decoder row lives in hook_z (heads x d_head), before W_O"),
    (boosted_variant(w_o="all"), "a transcoder writes to hook_mlp_out, already in the residual stream: no W_O"),
    (boosted_variant(centre=False), "centre the direction (subtract its mean)"),
    (boosted_variant(first_only=True), "sum the directions of *all* the pairs"),
    (boosted_variant(scale=False), "multiply each decoder row by `strength`"),
])
def test_wrong_boosted_tokens(checks06, variant, message):
    fails_with(checks06.test_boosted_tokens, variant, "boosted_tokens(", message)


def test_the_seed_bug_is_named_on_the_first_case(checks06):
    """The seed's missing W_O is recognised on a z-latent alone, where it runs without an error."""
    fails_with(checks06.test_boosted_tokens, boosted_variant(w_o="none"), "boosted_tokens(blocks.3.attn.hook_z #17,",
               "Multiplying it by W_U directly runs only because n_heads x d_head = d_model")


def test_boosted_tokens_through_the_full_layernorm_passes(checks06):
    """Centring with ln_final's own centring (a scale-free LayerNorm) gives the same order and values."""
    def via_layernorm(model, pairs, k=10, strength=1.0):
        direction = torch.zeros(model.cfg.d_model)
        for dictionary, latent in pairs:
            row = dictionary.W_dec[latent] * strength
            if dictionary.cfg.metadata.hook_name.endswith("hook_z"):
                layer = int(dictionary.cfg.metadata.hook_name.split(".")[1])
                for h in range(model.cfg.n_heads):
                    direction = direction + row[h * model.cfg.d_head:(h + 1) * model.cfg.d_head] @ model.W_O[layer, h]
            else:
                direction = direction + row
        centred = direction - direction.sum() / model.cfg.d_model
        values, ids = torch.sort(centred @ model.W_U, descending=True)
        return ids[:k], values[:k]

    passes(checks06.test_boosted_tokens, via_layernorm)


# -------------------------------------------------------------------------------------------------
# head_attribution


def head_variant(*, bias=True, swap=False, use_dec=False, transpose=False):
    def head_attribution(z, sae):
        n_heads, d_head = z.shape[-2:]
        W = sae.W_dec.T if use_dec else sae.W_enc
        if swap:
            W_heads = W.reshape(d_head, n_heads, -1).transpose(0, 1)
            b = sae.b_dec.reshape(d_head, n_heads).T
        else:
            W_heads = W.reshape(n_heads, d_head, -1)
            b = sae.b_dec.reshape(n_heads, d_head)
        centred = z - b if bias else z
        out = torch.einsum("...hd,hdf->...fh", centred, W_heads)
        return out.transpose(-1, -2) if transpose else out

    return head_attribution


@pytest.mark.parametrize("variant, message", [
    (head_variant(bias=False), "subtract the decoder bias first"),
    (head_variant(swap=True), "the flattened z puts the heads on the slow axis"),
    (head_variant(use_dec=True), "comes from the encoder, W_enc, not the decoder"),
    (head_variant(transpose=True), "return (..., d_sae, n_heads)"),
])
def test_wrong_head_attribution(checks06, variant, message):
    fails_with(checks06.test_head_attribution, variant, "head_attribution(hand SAE", message)


def test_head_attribution_with_a_loop_passes(checks06):
    def loop(z, sae):
        n_heads, d_head = z.shape[-2:]
        parts = []
        for h in range(n_heads):
            block = slice(h * d_head, (h + 1) * d_head)
            parts.append((z[..., h, :] - sae.b_dec[block]) @ sae.W_enc[block])
        return torch.stack(parts, -1)

    passes(checks06.test_head_attribution, loop)


def test_the_parts_add_up_to_the_sae_pre_activation():
    """Independently of the check: on the world, the parts plus b_enc give what sae_lens computes."""
    from utils.world import load_attn_saes, load_model

    model, sae = load_model(), load_attn_saes()[2]
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.tensor([[1, 50, 60, 70, 80]]), names_filter=["blocks.2.attn.hook_z"])
        z = cache["blocks.2.attn.hook_z"]
        pre = sae.process_sae_in(z) @ sae.W_enc + sae.b_enc
        parts = ref.head_attribution(z, sae)
    assert torch.allclose(parts.sum(-1) + sae.b_enc, pre, atol=1e-4)


# -------------------------------------------------------------------------------------------------
# greedy_circuit


def greedy_variant(*, ascending=False, absolute=False, strict=False, by_sum=False, extra=False):
    def greedy_circuit(effects, faithfulness, threshold=0.8):
        n, c = effects.shape
        key = effects.abs() if absolute else effects
        order = key.argsort(dim=1, descending=not ascending, stable=True)
        keep = torch.zeros(n, c, dtype=torch.bool)
        rows = torch.arange(n)
        if by_sum:
            faithfulness(keep)
            for i in range(n):
                total, goal = 0.0, threshold * float(effects[i].clamp_min(0).sum())
                for j in order[i].tolist():
                    if total >= goal:
                        break
                    keep[i, j] = True
                    total += float(effects[i, j])
            return keep
        for step in range(c):
            f = faithfulness(keep)
            todo = f <= threshold if strict else f < threshold
            if not todo.any():
                break
            keep[rows[todo], order[todo, step]] = True
        if extra:  # one more component after reaching the threshold
            for i in range(n):
                nxt = [j for j in order[i].tolist() if not keep[i, j]]
                if nxt:
                    keep[i, nxt[0]] = True
        return keep

    return greedy_circuit


@pytest.mark.parametrize("variant, message", [
    (greedy_variant(ascending=True), "add the component with the *largest* effect first"),
    (greedy_variant(absolute=True), "order by the effect itself, not its absolute value"),
    (greedy_variant(strict=True), "stop as soon as the faithfulness reaches the threshold (>=, not >)"),
    (greedy_variant(by_sum=True), "measure the kept set with `faithfulness` after each addition"),
])
def test_wrong_greedy_circuit(checks06, variant, message):
    fails_with(checks06.test_greedy_circuit, variant, "greedy_circuit(hand case", message)


def test_a_greedy_circuit_that_never_measures_is_named(checks06):
    def never(effects, faithfulness, threshold=0.8):
        return effects > 0

    fails_with(checks06.test_greedy_circuit, never, "never called `faithfulness`")


def test_one_component_too_many_fails(checks06):
    fails_with(checks06.test_greedy_circuit, greedy_variant(extra=True), "greedy_circuit(hand case, threshold 0.75)")


def test_greedy_one_prompt_at_a_time_passes(checks06):
    def per_prompt(effects, faithfulness, threshold=0.8):
        n, c = effects.shape
        keep = torch.zeros(n, c, dtype=torch.bool)
        for i in range(n):
            for j in sorted(range(c), key=lambda j: (-float(effects[i, j]), j)):
                if faithfulness(keep)[i] >= threshold:
                    break
                keep[i, j] = True
        return keep

    passes(checks06.test_greedy_circuit, per_prompt)


def test_the_hand_greedy_circuits():
    """Prompt 0 needs its two interacting components and a third; prompt 1 stops exactly at 0.75; prompt 2
    takes its harmful component 4 first and then needs three more (0 before 1: a tie)."""
    checks = course.load_checks("06_circuit_autointerp")
    got = ref.greedy_circuit(checks.TOY_EFFECTS, checks._toy_faithfulness, 0.75)
    assert got.tolist() == [[True, True, True, False, False], [False, False, True, True, False],
                            [True, True, False, True, True]]
    got = ref.greedy_circuit(checks.TOY_EFFECTS, checks._toy_faithfulness, 0.5)
    assert got.tolist() == [[True, True, False, False, False], [False, False, True, False, False],
                            [True, True, False, False, True]]


# -------------------------------------------------------------------------------------------------
# faithfulness_curve


def curve_variant(*, per_prompt=False, last=False, no_shift=False, raw=False):
    def faithfulness_curve(order, metric):
        values = []
        for k in range(len(order) + 1):
            keep = torch.zeros(len(order), dtype=torch.bool)
            chosen = order[len(order) - k:] if last else order[:k]
            keep[list(chosen)] = True
            values.append(metric(keep))
        values = torch.stack(values)
        if per_prompt:
            return ((values - values[0]) / (values[-1] - values[0])).mean(1)
        means = values.mean(1)
        if raw:
            return means
        return means / means[-1] if no_shift else (means - means[0]) / (means[-1] - means[0])

    return faithfulness_curve


@pytest.mark.parametrize("variant, message", [
    (curve_variant(per_prompt=True), "average over the prompts first, then normalise"),
    (curve_variant(last=True), "keep the *first* k heads of the order"),
    (curve_variant(no_shift=True), "subtract the value with no head kept before dividing"),
    (curve_variant(raw=True), "normalise: (value − value with no head)"),
])
def test_wrong_faithfulness_curve(checks06, variant, message):
    fails_with(checks06.test_faithfulness_curve, variant, "faithfulness_curve(hand case", message)


def test_faithfulness_curve_as_a_list_passes(checks06):
    def as_list(order, metric):
        means = [float(metric(torch.tensor([h in order[:k] for h in range(len(order))])).mean())
                 for k in range(len(order) + 1)]
        return [(m - means[0]) / (means[-1] - means[0]) for m in means]

    passes(checks06.test_faithfulness_curve, lambda order, metric: torch.tensor(as_list(order, metric)))


def test_the_hand_curve_starts_at_0_and_ends_at_1():
    checks = course.load_checks("06_circuit_autointerp")
    curve = ref.faithfulness_curve([0, 1, 3, 2], checks._toy_metric)
    assert abs(float(curve[0])) < 1e-6 and abs(float(curve[-1]) - 1) < 1e-6
    # k = 1 by hand: means over prompts of 1 + head 0 = (4 + 2 + 7) / 3; none (1), all: 1 + sums + bonus
    all_heads = [1 + 6 + 1, 1 + 0.5 + 0.5, 1 + 4.5 + 0]
    assert abs(float(curve[1]) - ((13 / 3 - 1) / (sum(all_heads) / 3 - 1))) < 1e-5


# -------------------------------------------------------------------------------------------------
# unique_latent_growth


def growth_variant(*, ignore_member=False, repeats=False, shifted=False):
    def unique_latent_growth(latents, in_circuit):
        seen, total, out = set(), 0, []
        for used, member in zip(latents, in_circuit.tolist()):
            if shifted:
                out.append(len(seen))
            if member or ignore_member:
                seen.update(used)
                total += len(used)
            if not shifted:
                out.append(total if repeats else len(seen))
        return torch.tensor(out)

    return unique_latent_growth


@pytest.mark.parametrize("variant, message", [
    (growth_variant(ignore_member=True), "only when the component is in that prompt's circuit"),
    (growth_variant(repeats=True), "count *distinct* latents"),
    (growth_variant(shifted=True), "entry p counts prompts 0..p, including prompt p itself"),
])
def test_wrong_unique_latent_growth(checks06, variant, message):
    fails_with(checks06.test_unique_latent_growth, variant, "unique_latent_growth(six prompts by hand)", message)


def test_unique_latent_growth_with_cumulative_masks_passes(checks06):
    def with_masks(latents, in_circuit):
        ids = sorted({j for used in latents for j in used})
        table = torch.tensor([[j in used for j in ids] for used in latents]) & in_circuit[:, None]
        return (table.cumsum(0) > 0).sum(1)

    passes(checks06.test_unique_latent_growth, with_masks)


def test_the_hand_growth():
    checks = course.load_checks("06_circuit_autointerp")
    assert ref.unique_latent_growth(checks.TOY_LATENTS, checks.TOY_MEMBER).tolist() == [2, 3, 3, 3, 4, 4]


# -------------------------------------------------------------------------------------------------
# cooccurrence_lift


def lift_variant(*, tail="sf-1", counts=False):
    def cooccurrence_lift(a, b):
        from scipy.stats import binom, hypergeom

        n = a.shape[0]
        a, b = a.double(), b.double()
        both = a.T @ b
        n_a, n_b = a.sum(0)[:, None], b.sum(0)[None, :]
        present = (n_a > 0) & (n_b > 0)
        lift = both if counts else n * both / (n_a * n_b).clamp_min(1)
        k, na, nb = both.numpy(), n_a.numpy(), n_b.numpy()
        if tail == "sf":
            p = hypergeom.sf(k, n, na, nb)
        elif tail == "cdf":
            p = hypergeom.cdf(k, n, na, nb)
        elif tail == "binom":
            p = binom.sf(k - 1, nb, na / n)
        else:
            p = hypergeom.sf(k - 1, n, na, nb)
        p = torch.tensor(p)
        return torch.where(present, lift, torch.zeros_like(lift)), torch.where(present, p, torch.ones_like(p))

    return cooccurrence_lift


@pytest.mark.parametrize("variant, message", [
    (lift_variant(counts=True), "these are counts of prompts with both"),
    (lift_variant(tail="sf"), "P(X >= k) includes k itself"),
    (lift_variant(tail="cdf"), "the p-value is the upper tail"),
    (lift_variant(tail="binom"), "a hypergeometric, not a binomial, tail"),
])
def test_wrong_cooccurrence_lift(checks06, variant, message):
    fails_with(checks06.test_cooccurrence_lift, variant, "cooccurrence_lift(hand case)", message)


def test_fisher_exact_one_sided_passes(checks06):
    """Fisher's one-sided exact test on each 2x2 table is the same p-value."""
    def fisher(a, b):
        from scipy.stats import fisher_exact

        n = a.shape[0]
        lift = torch.zeros(a.shape[1], b.shape[1], dtype=torch.float64)
        p = torch.ones_like(lift)
        for i in range(a.shape[1]):
            for j in range(b.shape[1]):
                k = int((a[:, i] & b[:, j]).sum())
                na, nb = int(a[:, i].sum()), int(b[:, j].sum())
                if na and nb:
                    lift[i, j] = n * k / (na * nb)
                    p[i, j] = fisher_exact([[k, na - k], [nb - k, n - na - nb + k]], alternative="greater")[1]
        return lift, p

    passes(checks06.test_cooccurrence_lift, fisher)


def test_the_hand_lift_values():
    checks = course.load_checks("06_circuit_autointerp")
    lift, p = ref.cooccurrence_lift(checks.TOY_A, checks.TOY_B)
    assert lift[0, 0].item() == pytest.approx(2.5) and lift[1, 1].item() == pytest.approx(1.0)
    assert lift[2, 0].item() == 0 and lift[3, 0].item() == 0 and p[3, 0].item() == 1
    # a0 & b0: 4 of 4 land among a0's 4 prompts out of 10: 1 / C(10, 4)
    assert p[0, 0].item() == pytest.approx(1 / math.comb(10, 4))
    # a2 & b0 never together: P(X >= 0) = 1
    assert p[2, 0].item() == pytest.approx(1.0)


# -------------------------------------------------------------------------------------------------
# component_explanation


def explanation_variant(*, combine="weighted", with_logits=True, twice=False):
    def component_explanation(latent_acts, weights, data, to_str_tokens, client, top_logits, n=10):
        from utils.autointerp import explain, top_examples

        if combine == "sum":
            activation = latent_acts.sum(-1)
        elif combine == "max":
            activation = (latent_acts * weights).max(-1).values
        elif combine == "mean":
            activation = latent_acts.mean(-1)
        else:
            activation = (latent_acts * weights).sum(-1)
        examples = top_examples(activation, data, to_str_tokens, n=n)
        if twice:
            explain(examples, client)
        explanation = explain(examples, client, top_logits=top_logits if with_logits else None)
        return {"activation": activation, "examples": examples, "explanation": explanation}

    return component_explanation


@pytest.mark.parametrize("variant, message", [
    (explanation_variant(combine="sum"), "weight each latent by its frequency in the circuits before summing"),
    (explanation_variant(combine="max"), "the weighted *sum* of its latents', not their maximum"),
    (explanation_variant(combine="mean"), "do not average"),
    (explanation_variant(with_logits=False), "pass the boosted tokens as top_logits"),
    (explanation_variant(twice=True), "should ask the client once"),
])
def test_wrong_component_explanation(checks06, variant, message):
    fails_with(checks06.test_component_explanation, variant, "component_explanation", message)


def test_component_explanation_with_einsum_passes(checks06):
    def with_einsum(latent_acts, weights, data, to_str_tokens, client, top_logits, n=10):
        from utils.autointerp import explanation_prompt, top_examples

        activation = torch.einsum("dpl,l->dp", latent_acts, weights)
        examples = top_examples(activation, data, to_str_tokens, n=n)
        return {"activation": activation, "examples": examples,
                "explanation": client.complete(explanation_prompt(examples, top_logits)).strip()}

    passes(checks06.test_component_explanation, with_einsum)


# -------------------------------------------------------------------------------------------------
# label_components (capstone)


def test_the_capstone_solution_passes_and_the_natural_wrong_guess_fails(checks06):
    names, f1s = checks06._capstone_world()
    passes(checks06.test_label_components, ref.label_components)
    wrong = {name: "p3_repeat" for name in names}  # "the second copy, where induction predicts"
    fails_with(checks06.test_label_components, lambda: wrong, "labelled 'p3_repeat'", "it needs F1 >=")


def test_a_capstone_label_that_is_not_a_concept_is_named(checks06):
    names, _ = checks06._capstone_world()
    fails_with(checks06.test_label_components, lambda: {name: "p3 run" for name in names},
               "which is not a planted concept label", "did you mean 'p3_run'")


def test_a_capstone_with_a_missing_component_is_named(checks06):
    names, _ = checks06._capstone_world()
    fails_with(checks06.test_label_components, lambda: {names[0]: "p3_run"}, "missing")


def test_a_too_broad_capstone_label_is_named(checks06):
    names, f1s = checks06._capstone_world()
    broad = "ioi" if "ioi" in f1s[names[0]].concepts else f1s[names[0]].concepts[0]
    fails_with(checks06.test_label_components, lambda: {name: broad for name in names}, "it needs F1 >=")


def test_the_capstone_gap_between_right_and_wrong_labels():
    """On the shipped world the best label of each layer-3 head is p3_run, and p3_repeat (what the task
    needs) stays below 0.8 x the best: the check separates them."""
    checks = course.load_checks("06_circuit_autointerp")
    names, f1s = checks._capstone_world()
    for name in names:
        scores = f1s[name]
        best = float(scores.f1[:, 0].max())
        repeat = float(scores.f1[scores.concepts.index("p3_repeat"), 0])
        assert repeat < checks.PASS_SHARE * best, (name, repeat, best)


# -------------------------------------------------------------------------------------------------
# direct_contributions


def direct_variant(*, centre=True, use_w=True, per_piece=False, drop=()):
    def direct_contributions(model, cache, transcoders, answer, wrong):
        out = ref.direct_contributions(model, cache, transcoders, answer, wrong)
        if centre and use_w and not per_piece:
            return {k: v for k, v in out.items() if not any(k.startswith(d) for d in drop)}
        scale = cache["ln_final.hook_scale"][:, -1]
        d_u = (model.W_U[:, answer] - model.W_U[:, wrong]).T
        w = model.ln_final.w if use_w else 1.0

        def through(v):
            if per_piece:
                return ((model.ln_final(v[:, None])[:, 0] - model.ln_final.b) * d_u).sum(-1)
            x = v - v.mean(-1, keepdim=True) if centre else v
            return ((x / scale) * w * d_u).sum(-1)

        out = {"embed": through(cache["hook_embed"][:, -1]), "pos_embed": through(cache["hook_pos_embed"][:, -1])}
        for layer in range(model.cfg.n_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"][:, -1]
            for head in range(model.cfg.n_heads):
                out[f"L{layer}H{head}"] = through(z[:, head] @ model.W_O[layer, head])
            out[f"b_O{layer}"] = through(model.b_O[layer].expand(len(answer), -1))
            tc = transcoders[layer]
            latents = tc.encode(cache[tc.cfg.metadata.hook_name][:, -1]) @ tc.W_dec
            out[f"MLP{layer} latents"] = through(latents)
            out[f"MLP{layer} b_dec"] = through(tc.b_dec.expand(len(answer), -1))
            out[f"MLP{layer} error"] = through(cache[f"blocks.{layer}.hook_mlp_out"][:, -1] - latents - tc.b_dec)
        out["biases"] = (model.ln_final.b * d_u).sum(-1) + model.b_U[answer] - model.b_U[wrong]
        return out

    return direct_contributions


@pytest.mark.parametrize("variant, message", [
    (direct_variant(centre=False), "centre each piece (v − v.mean(-1)) before dividing by the scale"),
    (direct_variant(use_w=False), "multiply by ln_final.w too"),
    (direct_variant(per_piece=True), "freeze the scale"),
    (direct_variant(drop=("MLP0 error", "MLP1 error", "MLP2 error", "MLP3 error")), "'MLP0 error', 'MLP1 error'"),
    (direct_variant(drop=("b_O",)), "['b_O0', 'b_O1', 'b_O2', 'b_O3'] are missing"),
])
def test_wrong_direct_contributions(checks06, variant, message):
    fails_with(checks06.test_direct_contributions, variant, "direct_contributions", message)


def test_direct_contributions_written_out_pass(checks06):
    """The pieces computed one prompt at a time (the check's own way, a correct alternative)."""
    checks = course.load_checks("06_circuit_autointerp")
    passes(checks06.test_direct_contributions, lambda model, cache, tcs, a, w: checks._pieces_by_hand(model, cache, tcs, a, w))


def test_the_pieces_add_up_to_the_logits_on_the_world():
    """Independent of the check: the reference's pieces sum to the model's logit difference."""
    checks = course.load_checks("06_circuit_autointerp")
    task, cache, diff = checks._direct_case()
    w = checks._world()
    with torch.no_grad():
        pieces = ref.direct_contributions(w.model, cache, w.tc, task["answer"], task["wrong"])
    assert torch.allclose(sum(pieces.values()), diff, atol=1e-3)


def test_the_checks_leave_gradients_on(checks06):
    """The checks run in the same process as other chapters' tests (and in a student's kernel): they must
    not switch gradients off for everyone."""
    assert torch.is_grad_enabled()
    for check, fn in [(checks06.test_feature_scores, ref.feature_scores), (checks06.test_head_attribution, ref.head_attribution),
                      (checks06.test_direct_contributions, ref.direct_contributions),
                      (checks06.test_label_components, ref.label_components)]:
        passes(check, fn)
        assert torch.is_grad_enabled(), check.__name__
