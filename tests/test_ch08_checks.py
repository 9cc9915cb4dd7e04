"""Chapter 08's checks against wrong implementations: each must fail with the message meant for it;
correct alternatives the text allows must pass.

(That the reference solutions pass every check is tested for all chapters in test_chapter_checks.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import solutions.ch08_feature_circuits_shift as ref
from check_helpers import fails_with, passes
from utils import course


@pytest.fixture(scope="module")
def checks08():
    return course.load_checks("08_feature_circuits_shift")


# -------------------------------------------------------------------------------------------------
# group_accuracy


def group_variant(*, by_field=False, mean_worst=False, person_inverted=False, keys_swapped=False):
    def group_accuracy(pred, field, person):
        groups = {}
        for p in (0, 1):
            for f in (0, 1):
                members = (field == f) if by_field else (person == p) & (field == f)
                if members.any():
                    key = f if by_field else (f, p) if keys_swapped else (p, f)
                    groups[key] = float((pred[members] == f).float().mean())
        person_acc = float((pred != person).float().mean()) if person_inverted else float((pred == person).float().mean())
        worst = float(np.mean(list(groups.values()))) if mean_worst else min(groups.values())
        return {"field_accuracy": float((pred == field).float().mean()), "person_accuracy": person_acc,
                "groups": groups, "worst_group": worst}
    return group_accuracy


@pytest.mark.parametrize("wrong, messages", [
    (group_variant(by_field=True), ["groups [(0,), (1,)]", "grouping by field alone hides the failure"]),
    (group_variant(mean_worst=True), ["worst_group is", "the minimum, not the mean"]),
    (group_variant(person_inverted=True), ["person_accuracy is", "*equals* the person"]),
    (group_variant(keys_swapped=True), ["the keys are (person, field), in that order"]),
])
def test_group_accuracy_names_the_mistake(checks08, wrong, messages):
    fails_with(checks08.test_group_accuracy, wrong, *messages)


def test_group_accuracy_in_numpy_passes(checks08, capsys):
    def group_accuracy(pred, field, person):
        pred, field, person = (np.asarray(t) for t in (pred, field, person))
        groups = {(int(p), int(f)): float(np.mean(pred[(person == p) & (field == f)] == f))
                  for p, f in sorted(set(zip(person.tolist(), field.tolist())))}
        return {"field_accuracy": float(np.mean(pred == field)), "person_accuracy": float(np.mean(pred == person)),
                "groups": groups, "worst_group": min(groups.values())}
    passes(checks08.test_group_accuracy, group_accuracy, capsys)


# -------------------------------------------------------------------------------------------------
# judge_by_labels


def judge_variant(*, mask=True, use_min=True, first_only=False, ties=False, counts=False):
    def judge_by_labels(acts, data, spurious, intended, min_f1=0.2):
        fires = (acts > 0) & (data.mask[..., None] if mask else torch.ones_like(data.mask)[..., None])

        def best(concepts):
            scores = []
            for c in (concepts[:1] if first_only else concepts):
                truth = data.labels[..., data.concept_index(c)] & (data.mask if mask else True)
                tp = (fires & truth[..., None]).sum((0, 1)).float()
                if counts:
                    fp = (fires & ~truth[..., None]).sum((0, 1)).float()
                    fn = (~fires & truth[..., None]).sum((0, 1)).float()
                    if mask:
                        fn = (~fires & truth[..., None] & data.mask[..., None]).sum((0, 1)).float()
                    scores.append(2 * tp / (2 * tp + fp + fn).clamp(min=1))
                    continue
                precision = tp / fires.sum((0, 1)).clamp(min=1)
                recall = tp / truth.sum().clamp(min=1)
                scores.append(2 * precision * recall / (precision + recall).clamp(min=1e-12))
            return torch.stack(scores).max(0).values

        s, i = best(spurious), best(intended)
        return ((s >= min_f1) | (not use_min)) & ((s >= i) if ties else (s > i))
    return judge_by_labels


@pytest.mark.parametrize("wrong, messages", [
    (judge_variant(mask=False), ["judge_by_labels(the hand case, min_f1=0.6)", "count only real tokens"]),
    (judge_variant(use_min=False), ["min_f1=0.6", "at least `min_f1`"]),
    (judge_variant(first_only=True), ["over *every* concept of each list"]),
    (judge_variant(ties=True), ["a tie is not spurious"]),
])
def test_judge_by_labels_names_the_mistake(checks08, wrong, messages):
    fails_with(checks08.test_judge_by_labels, wrong, *messages)


def test_judge_by_labels_from_counts_passes(checks08, capsys):
    """F1 = 2 tp / (2 tp + fp + fn) is the same score."""
    passes(checks08.test_judge_by_labels, judge_variant(counts=True), capsys)


# -------------------------------------------------------------------------------------------------
# cohen_kappa


def kappa_variant(kind):
    def cohen_kappa(a, b):
        a, b = a.float(), b.float()
        p_o = float((a == b).float().mean())
        pa, pb = float(a.mean()), float(b.mean())
        if kind == "raw":
            return p_o
        p_e = {"half": 0.5, "one judge": pa * pa + (1 - pa) ** 2, "true only": pa * pb}[kind]
        return 1.0 if p_e == 1 else (p_o - p_e) / (1 - p_e)
    return cohen_kappa


@pytest.mark.parametrize("kind, message", [
    ("raw", "that is the raw agreement p_o"),
    ("half", "chance agreement is not 0.5"),
    ("one judge", "not pa² + (1 − pa)²"),
    ("true only", "also counts agreeing on False"),
])
def test_cohen_kappa_names_the_mistake(checks08, kind, message):
    fails_with(checks08.test_cohen_kappa, kappa_variant(kind), message)


def test_cohen_kappa_from_sklearn_passes(checks08, capsys):
    from sklearn.metrics import cohen_kappa_score

    def cohen_kappa(a, b):
        return 1.0 if bool((a == b).all()) and len(set(a.tolist())) == 1 else float(cohen_kappa_score(a.numpy(), b.numpy()))
    passes(checks08.test_cohen_kappa, cohen_kappa, capsys)


def test_cohen_kappa_without_the_constant_case_fails(checks08):
    fails_with(checks08.test_cohen_kappa, _nan_kappa, "both say True on everything")


def _nan_kappa(a, b):
    a, b = a.float(), b.float()
    p_o = float((a == b).float().mean())
    pa, pb = float(a.mean()), float(b.mean())
    p_e = pa * pb + (1 - pa) * (1 - pb)
    return float("nan") if p_e == 1 else (p_o - p_e) / (1 - p_e)


# -------------------------------------------------------------------------------------------------
# atp_effects


def atp_variant(*, sign=1, grad_on="clean", mean=False, no_error=False):
    """The reference with one thing changed."""
    def atp_effects(model, saes, clean, corrupt, metric):
        hooks = [ref.hook_name(L) for L in saes]
        saved = {}

        def keep(x, hook):
            x.retain_grad()
            saved[hook.name] = x
            return x

        def leaf(x, hook):
            return x.detach().requires_grad_()

        at = clean if grad_on == "clean" else corrupt
        with torch.enable_grad():
            m = metric(model.run_with_hooks(at, fwd_hooks=[("hook_embed", leaf)] + [(h, keep) for h in hooks]))
            (m.mean() if mean else m.sum()).backward()
        _, cache_c = model.run_with_cache(clean, names_filter=hooks)
        _, cache_p = model.run_with_cache(corrupt, names_filter=hooks)
        out = {}
        for L, sae in saes.items():
            grad = saved[ref.hook_name(L)].grad
            x, xp = cache_c[ref.hook_name(L)], cache_p[ref.hook_name(L)]
            f, fp = sae.encode(x), sae.encode(xp)
            err, errp = x - sae.decode(f), xp - sae.decode(fp)
            lat = sign * (fp - f) * (grad @ sae.W_dec.T)
            err_e = torch.zeros(x.shape[:2]) if no_error else sign * ((errp - err) * grad).sum(-1)
            out[L] = (lat, err_e)
        return out
    return atp_effects


def atp_detached_splice(model, saes, clean, corrupt, metric):
    """Chapter 03's splice at every layer: latents as leaves, error detached. The graph is cut at each
    hook, so only the last layer's latents get a gradient (the others' .grad stays None: taken as 0)."""
    leaves = {}

    def splice(x, hook):
        sae = saes[int(hook.name.split(".")[1])]
        f = sae.encode(x).detach().requires_grad_()
        leaves[hook.name] = (f, (x - sae.decode(f)).detach().requires_grad_())
        return sae.decode(f) + leaves[hook.name][1]

    with torch.enable_grad():
        metric(model.run_with_hooks(clean, fwd_hooks=[(ref.hook_name(L), splice) for L in saes])).sum().backward()
    _, cache_p = model.run_with_cache(corrupt, names_filter=[ref.hook_name(L) for L in saes])
    out = {}
    for L, sae in saes.items():
        f, err = leaves[ref.hook_name(L)]
        xp = cache_p[ref.hook_name(L)]
        fp = sae.encode(xp)
        errp = xp - sae.decode(fp)
        gf = f.grad if f.grad is not None else torch.zeros_like(f)
        ge = err.grad if err.grad is not None else torch.zeros_like(err)
        out[L] = ((fp - f.detach()) * gf, ((errp - err.detach()) * ge).sum(-1))
    return out


@pytest.mark.parametrize("wrong, messages", [
    (atp_detached_splice, ["every latent effect at layer(s) [1, 2] is 0", "no gradient reached the earlier layers",
                           "decode(f) + err.detach()"]),
    (atp_variant(sign=-1), ["the sign: the change is corrupted minus clean"]),
    (atp_variant(grad_on="corrupt"), ["take the gradient on the *clean* run"]),
    (atp_variant(mean=True), ["backpropagate the *sum* of the metric"]),
    (atp_variant(no_error=True), ["error-node effects", "the error node changes too"]),
])
def test_atp_effects_names_the_mistake(checks08, wrong, messages):
    fails_with(checks08.test_atp_effects, wrong, *messages)


def test_atp_effects_with_autograd_grad_passes(checks08, capsys):
    """The gradients of every hook's activation from one torch.autograd.grad call, the error node's
    effect as the residual stream's change minus the reconstruction's."""
    def atp_effects(model, saes, clean, corrupt, metric):
        xs = {}

        def grab(x, hook):
            xs[hook.name] = x
            return x

        def leaf(x, hook):
            return x.detach().requires_grad_()

        names = [ref.hook_name(L) for L in saes]
        with torch.enable_grad():
            m = metric(model.run_with_hooks(clean, fwd_hooks=[("hook_embed", leaf)] + [(h, grab) for h in names]))
            grads = dict(zip(names, torch.autograd.grad(m.sum(), [xs[h] for h in names])))
        _, cache_p = model.run_with_cache(corrupt, names_filter=names)
        out = {}
        for L, sae in saes.items():
            h = ref.hook_name(L)
            x, xp, g = xs[h].detach(), cache_p[h], grads[h]
            f, fp = sae.encode(x), sae.encode(xp)
            d_recon = sae.decode(fp) - sae.decode(f)
            out[L] = ((fp - f) * (g @ sae.W_dec.T), (((xp - x) - d_recon) * g).sum(-1))
        return out
    passes(checks08.test_atp_effects, atp_effects, capsys)


# -------------------------------------------------------------------------------------------------
# ig_effects


def ig_variant(alphas="left", mean=True, batched=False):
    def ig_effects(model, saes, clean, corrupt, metric, steps=10):
        names = [ref.hook_name(L) for L in saes]
        _, cache_c = model.run_with_cache(clean, names_filter=names)
        _, cache_p = model.run_with_cache(corrupt, names_filter=names)
        points = {"left": [k / steps for k in range(steps)], "right": [(k + 1) / steps for k in range(steps)],
                  "clean": [0.0]}[alphas]
        out = {}
        for L, sae in saes.items():
            x, xp = cache_c[ref.hook_name(L)], cache_p[ref.hook_name(L)]
            f, fp = sae.encode(x), sae.encode(xp)
            err, errp = x - sae.decode(f), xp - sae.decode(fp)
            if batched:  # every α in one batch
                a = torch.tensor(points).repeat_interleave(len(clean))[:, None, None]
                f_a = ((1 - a) * f.repeat(len(points), 1, 1) + a * fp.repeat(len(points), 1, 1)).requires_grad_()
                e_a = ((1 - a) * err.repeat(len(points), 1, 1) + a * errp.repeat(len(points), 1, 1)).requires_grad_()
                with torch.enable_grad():
                    metric(model.run_with_hooks(clean.repeat(len(points), 1),
                                                fwd_hooks=[(ref.hook_name(L), lambda x, hook: sae.decode(f_a) + e_a)])).sum().backward()
                gf = f_a.grad.view(len(points), *f.shape).sum(0)
                ge = e_a.grad.view(len(points), *err.shape).sum(0)
            else:
                gf, ge = torch.zeros_like(f), torch.zeros_like(err)
                for a in points:
                    f_a = ((1 - a) * f + a * fp).requires_grad_()
                    e_a = ((1 - a) * err + a * errp).requires_grad_()
                    with torch.enable_grad():
                        metric(model.run_with_hooks(clean, fwd_hooks=[(ref.hook_name(L), lambda x, hook: sae.decode(f_a) + e_a)])).sum().backward()
                    gf, ge = gf + f_a.grad, ge + e_a.grad
            n = len(points) if mean else 1
            out[L] = ((fp - f) * gf / n, ((errp - err) * ge / n).sum(-1))
        return out
    return ig_effects


@pytest.mark.parametrize("wrong, messages", [
    (ig_variant(alphas="right"), ["α runs from 1/steps to 1"]),
    (ig_variant(mean=False), ["average the gradients over the steps"]),
    (ig_variant(alphas="clean"), ["that is AtP"]),
])
def test_ig_effects_names_the_mistake(checks08, wrong, messages):
    fails_with(checks08.test_ig_effects, wrong, *messages)


def test_ig_effects_batched_over_alpha_passes(checks08, capsys):
    passes(checks08.test_ig_effects, ig_variant(batched=True), capsys)


# -------------------------------------------------------------------------------------------------
# edge_effects


def edge_variant(*, delta=True, weight=True, transpose=False, through_resid=False):
    def edge_effects(model, saes, tokens, up, down, up_delta, down_grad, down_latents):
        sae_up, sae_down = saes[up], saes[down]
        x_up = ref.resid(model, tokens, up)
        rows = []
        with torch.enable_grad():
            if through_resid:
                leaf = x_up.clone().requires_grad_()
                x_down = model.run_with_hooks(tokens, stop_at_layer=down, fwd_hooks=[(ref.hook_name(up), lambda x, hook: leaf)])
            else:
                leaf = sae_up.encode(x_up).detach().requires_grad_()
                err = (x_up - sae_up.decode(leaf)).detach()
                x_down = model.run_with_hooks(tokens, stop_at_layer=down,
                                              fwd_hooks=[(ref.hook_name(up), lambda x, hook: sae_up.decode(leaf) + err)])
            f_down = sae_down.encode(x_down)
            for d in down_latents:
                w = down_grad[..., d] if weight else 1.0
                (g,) = torch.autograd.grad((w * f_down[..., d]).sum(), leaf, retain_graph=True)
                if through_resid:
                    g = g @ sae_up.W_dec.T
                rows.append((g * up_delta).sum((0, 1)) if delta else g.sum((0, 1)))
        out = torch.stack(rows)
        return out.T if transpose else out
    return edge_effects


@pytest.mark.parametrize("wrong, messages", [
    (edge_variant(delta=False), ["multiply the gradient by up_delta"]),
    (edge_variant(weight=False), ["weight each downstream latent by down_grad"]),
    (edge_variant(transpose=True), ["one row per downstream latent"]),
])
def test_edge_effects_names_the_mistake(checks08, wrong, messages):
    fails_with(checks08.test_edge_effects, wrong, *messages)


def test_edge_effects_through_the_residual_stream_passes(checks08, capsys):
    passes(checks08.test_edge_effects, edge_variant(through_resid=True), capsys)


# -------------------------------------------------------------------------------------------------
# circuit_metric


def circuit_variant(*, zero=False, error="mask", invert=False, dim=0, manual=False):
    def circuit_metric(model, sae, layer, tokens, metric, keep):
        keep_ = ~keep if invert else keep

        def ablate(x, hook):
            f = sae.encode(x)
            err = x - sae.decode(f)
            f_fill = torch.zeros_like(f) if zero else f.mean(dim, keepdim=True).expand_as(f)
            e_fill = torch.zeros_like(err) if zero else err.mean(dim, keepdim=True).expand_as(err)
            f = torch.where(keep_[:, :-1], f, f_fill)
            if error == "mask":
                err = torch.where(keep_[:, -1:], err, e_fill)
            if manual:
                return f @ sae.W_dec + sae.b_dec + err
            return sae.decode(f) + err
        return metric(model.run_with_hooks(tokens, fwd_hooks=[(ref.hook_name(layer), ablate)]))
    return circuit_metric


@pytest.mark.parametrize("wrong, messages", [
    (circuit_variant(zero=True), ["keep nothing", "mean-ablate (the mean over the prompts), not zero-ablate"]),
    (circuit_variant(error="always kept"), ["keep nothing", "the error node is a node too"]),
    (circuit_variant(dim=1), ["keep nothing", "the mean is over the prompts (dimension 0)"]),
    (circuit_variant(invert=True), ["keep everything"]),
])
def test_circuit_metric_names_the_mistake(checks08, wrong, messages):
    fails_with(checks08.test_circuit_metric, wrong, *messages)


def test_circuit_metric_with_the_decoder_written_out_passes(checks08, capsys):
    passes(checks08.test_circuit_metric, circuit_variant(manual=True), capsys)


# -------------------------------------------------------------------------------------------------
# ablation_hooks


def hooks_variant(mode):
    def ablation_hooks(saes, latents):
        by = {}
        for L, j in latents:
            by.setdefault(L, []).append(j)
        hooks = []
        for L, chosen in by.items():
            idx, sae = torch.tensor(chosen), saes[L]
            if mode == "late binding":
                def fn(x, hook):
                    return x - sae.encode(x)[..., idx] @ sae.W_dec[idx]
            else:
                def fn(x, hook, idx=idx, sae=sae):
                    f = sae.encode(x)
                    if mode == "no error":
                        f = f.clone()
                        f[..., idx] = 0
                        return sae.decode(f)
                    if mode == "b_dec":
                        return x - sae.decode(torch.zeros_like(f).index_copy(-1, idx, f[..., idx]))
                    if mode == "last position":
                        out = x.clone()
                        out[:, -1] -= f[:, -1, idx] @ sae.W_dec[idx]
                        return out
                    if mode == "masked decode":  # correct: decode(f) - decode(f without them)
                        off = f.clone()
                        off[..., idx] = 0
                        return x - (sae.decode(f) - sae.decode(off))
                    raise AssertionError(mode)
            hooks.append((ref.hook_name(L), fn))
        return hooks
    return ablation_hooks


@pytest.mark.parametrize("mode, message", [
    ("no error", "keep the SAE's error term"),
    ("b_dec", "sae.decode adds b_dec"),
    ("late binding", "bind them as default arguments"),
    ("last position", "ablate at every position, not only the last"),
])
def test_ablation_hooks_names_the_mistake(checks08, mode, message):
    fails_with(checks08.test_ablation_hooks, hooks_variant(mode), message)


def test_ablation_hooks_by_masked_decoding_passes(checks08, capsys):
    passes(checks08.test_ablation_hooks, hooks_variant("masked decode"), capsys)


def test_ablation_hooks_one_hook_per_latent_fails(checks08):
    def ablation_hooks(saes, latents):
        return [(ref.hook_name(L), lambda x, hook, L=L, j=j: x - saes[L].encode(x)[..., j, None] * saes[L].W_dec[j])
                for L, j in latents]
    fails_with(checks08.test_ablation_hooks, ablation_hooks, "expected one hook per layer")


# -------------------------------------------------------------------------------------------------
# debias_latents (capstone, graded on content)


def test_debias_latents_random_latents_leave_the_bias(checks08):
    rng = np.random.default_rng(0)
    fails_with(checks08.test_debias_latents,
               lambda model, saes, pairs: [(int(L), int(j)) for L, j in zip(rng.choice([1, 2, 3], 20), rng.choice(512, 20, replace=False))],
               "of the bias is left on the evaluation wordings")


def test_debias_latents_too_many_or_invalid_fail(checks08):
    fails_with(checks08.test_debias_latents, lambda model, saes, pairs: [(1, j) for j in range(25)],
               "returned 25 latents")
    fails_with(checks08.test_debias_latents, lambda model, saes, pairs: [(0, 3), (1, 4)], "layers are (1, 2, 3)")
    fails_with(checks08.test_debias_latents, lambda model, saes, pairs: [(1, 3), (1, 3)], "the same latent twice")


def test_debias_latents_by_atp_over_all_layers_passes(checks08, capsys):
    """The notebook's own ranking (one direction, three layers) is a correct answer too."""
    def debias_latents(model, saes, pairs):
        score = torch.zeros(3, saes[1].W_dec.shape[0])
        for clean, corrupt in pairs:
            e = ref.atp_effects(model, saes, clean, corrupt, ref.she_he)
            score += torch.stack([e[L][0].sum((0, 1)) for L in ref.LAYERS])
        return [(ref.LAYERS[i // score.shape[1]], i % score.shape[1]) for i in score.flatten().argsort()[:20].tolist()]
    passes(checks08.test_debias_latents, debias_latents, capsys)


# -------------------------------------------------------------------------------------------------
# shift


def shift_variant(*, ablate_train=True, ablate_test=True, mask_form=False):
    def shift(probe, latents, pooled, pooled_latents, W_dec, amb_field):
        idx = torch.as_tensor(list(latents), dtype=torch.long)
        if mask_form:  # a correct alternative: zero the latents in a copy and subtract the difference
            gone = {}
            for name in ("amb", "test"):
                kept = pooled_latents[name].clone()
                kept[:, idx] = 0
                gone[name] = pooled[name] - (pooled_latents[name] - kept) @ W_dec
        else:
            gone = {name: pooled[name] - pooled_latents[name][:, idx] @ W_dec[idx] for name in ("amb", "test")}
        test = gone["test"] if ablate_test else pooled["test"]
        retrained = ref.train_probe(gone["amb"] if ablate_train else pooled["amb"], amb_field)
        return {"ablated": ref.predict(probe, test), "retrained": ref.predict(retrained, test)}
    return shift


@pytest.mark.parametrize("wrong, message", [
    (shift_variant(ablate_test=False), "evaluate on the *ablated* test set"),
    (shift_variant(ablate_train=False), "retrain on the *ablated* ambiguous set"),
])
def test_shift_names_the_mistake(checks08, wrong, message):
    fails_with(checks08.test_shift, wrong, message)


def test_shift_by_masking_passes(checks08, capsys):
    passes(checks08.test_shift, shift_variant(mask_form=True), capsys)


def test_shift_with_the_wrong_keys_fails(checks08):
    fails_with(checks08.test_shift, lambda *args: {"same": None}, "keys 'ablated' and 'retrained'")
