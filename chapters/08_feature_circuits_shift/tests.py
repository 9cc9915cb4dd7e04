"""Checks for chapter 08. The notebook calls them as `tests.test_<exercise>(learner_code, ...)`.

Each check runs the learner's function on a case worked out here (by hand, or from the definition
with a different computation than the reference's: F1 from counts, sklearn for kappa, one SAE spliced in at
a time for attribution patching, interpolation of the residual stream for integrated gradients,
finite differences for edges) and on course-world inputs, and names the known mistakes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

import solutions.ch08_feature_circuits_shift as ref
from utils.checks import Mistake, assert_tensor, check, expect, fail

# -------------------------------------------------------------------------------------------------
# The course world (loaded once, only when a check needs it)


@lru_cache(maxsize=1)
def _world():
    from utils.world import load_model, load_resid_saes

    return load_model(), load_resid_saes()


@lru_cache(maxsize=1)
def _pairs():
    """A small AtP task: 6 (clean, corrupted) pairs of the second selection wording."""
    model, _ = _world()
    clean, corrupt = ref.profession_pairs(model, ref.SELECT_FRAMES[1], list(ref.F.NAMES))
    return clean[:6], corrupt[:6]


def _he_she(logits: Tensor) -> Tensor:
    return -ref.she_he(logits)


def _lazy(make, hint: str) -> Mistake:
    """A named mistake whose wrong answer is computed only when a check has already failed."""
    cache = []

    def test(actual) -> bool:
        if not cache:
            cache.append(make())
        wrong = cache[0].detach().double()
        return (isinstance(actual, Tensor) and actual.shape == wrong.shape
                and torch.allclose(actual.detach().double(), wrong, rtol=1e-3, atol=2e-3 * (float(wrong.abs().max()) + 1e-6)))
    return Mistake(test, hint)


def _like(wrong: Tensor, hint: str) -> Mistake:
    return _lazy(lambda: wrong, hint)


# -------------------------------------------------------------------------------------------------
# group_accuracy


def _group_accuracy(pred, field, person) -> dict:
    """Written from the definition with Python lists, not tensors."""
    pred, field, person = (t.tolist() for t in (pred, field, person))
    groups = {}
    for key in sorted(set(zip(person, field))):
        idx = [i for i in range(len(pred)) if (person[i], field[i]) == key]
        groups[key] = sum(pred[i] == key[1] for i in idx) / len(idx)
    n = len(pred)
    return {"field_accuracy": sum(p == f for p, f in zip(pred, field)) / n,
            "person_accuracy": sum(p == q for p, q in zip(pred, person)) / n,
            "groups": groups, "worst_group": min(groups.values())}


def _group_cases():
    # Hand case: a probe that follows the person. Groups (person, field): (0,0) right, (1,1) right,
    # (0,1) and (1,0) wrong, except one bio of (1,0).
    person = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 1])
    field = torch.tensor([0, 0, 1, 1, 1, 1, 0, 0, 0])
    pred = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1, 0])
    g = torch.Generator().manual_seed(0)
    rand = tuple(torch.randint(0, 2, (40,), generator=g) for _ in range(3))
    three_groups = (torch.tensor([1, 0, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 0, 1, 1, 1]))
    return [("the 9-bio hand case", (pred, field, person)), ("40 random bios", rand),
            ("5 bios with only 3 groups present", three_groups)]


@check
@torch.no_grad()
def test_group_accuracy(group_accuracy) -> None:
    for name, (pred, field, person) in _group_cases():
        got = group_accuracy(pred.clone(), field.clone(), person.clone())
        want = _group_accuracy(pred, field, person)
        expect(isinstance(got, dict), f"group_accuracy should return a dict, not {type(got).__name__}.")
        missing = [k for k in want if k not in got]
        expect(not missing, f"group_accuracy's dict lacks {missing}; it needs {list(want)}.")
        for key in ("field_accuracy", "person_accuracy"):
            value = float(got[key])
            if abs(value - want[key]) > 1e-6:
                hint = ""
                if key == "person_accuracy" and abs(value - (1 - want[key])) < 1e-6:
                    hint = " Hint: count the bios whose prediction *equals* the person (1 = third person)."
                fail(f"group_accuracy on {name}: {key} is {value:.3f}, expected {want[key]:.3f}.{hint}")
        groups = {tuple(int(x) for x in (k if isinstance(k, (tuple, list)) else (k,))): float(v)
                  for k, v in dict(got["groups"]).items()}
        if set(groups) != set(want["groups"]):
            hint = (" Hint: a group is a (person, field) pair; grouping by field alone hides the failure."
                    if len(groups) == 2 else " Hint: leave out groups with no bio." if len(groups) > len(want["groups"]) else "")
            fail(f"group_accuracy on {name}: groups {sorted(groups)}, expected {sorted(want['groups'])}.{hint}")
        for key, value in want["groups"].items():
            if abs(groups[key] - value) > 1e-6:
                swapped = (key[1], key[0]) in want["groups"] and abs(groups[key] - want["groups"][(key[1], key[0])]) < 1e-6
                hint = (" Hint: the keys are (person, field), in that order." if swapped else
                        " Hint: a group's accuracy compares the prediction with the *field*." if abs(
                            groups[key] - (1 - value)) < 1e-6 else "")
                fail(f"group_accuracy on {name}: group {key} has accuracy {groups[key]:.3f}, expected {value:.3f}.{hint}")
        worst = float(got["worst_group"])
        if abs(worst - want["worst_group"]) > 1e-6:
            mean = float(np.mean(list(want["groups"].values())))
            hint = " Hint: the worst group is the minimum, not the mean." if abs(worst - mean) < 1e-6 else ""
            fail(f"group_accuracy on {name}: worst_group is {worst:.3f}, expected {want['worst_group']:.3f}.{hint}")


# -------------------------------------------------------------------------------------------------
# judge_by_labels


class _Corpus:
    """The fields of a LabelledCorpus that the judge reads."""

    def __init__(self, tokens, concepts, labels, mask):
        self.tokens, self.concepts, self.labels, self.mask = tokens, list(concepts), labels, mask

    def concept_index(self, name):
        return self.concepts.index(name)


def _hand_corpus():
    """2 documents x 9 positions (BOS, 4 tokens, 4 PAD in the first; BOS, 5 tokens, 3 PAD in the second).
    Concepts: s1, s2 (spurious), i1 (intended). Latents:
      0: fires exactly on s1 -> spurious F1 1, intended 0 -> True
      1: fires on i1 and on one s2 token -> intended F1 beats spurious -> False
      2: fires on s2 tokens and on BOS and PAD (masked out) -> spurious F1 1 with the mask -> True (without
         the mask 0.4: False at min_f1 0.6)
      3: fires on one s2 token of three -> F1 0.5, intended 0 -> True with min_f1 0.2, False with 0.6
      4: never fires -> False
      5: ties: fires on one s1 and one i1 token, s1 and i1 have one token each -> F1 equal -> False."""
    mask = torch.tensor([[0, 1, 1, 1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    labels = torch.zeros(2, 9, 3, dtype=torch.bool)
    s1, s2, i1 = 0, 1, 2
    labels[0, 1, s1] = True
    labels[1, 1, i1] = True
    labels[0, 3, s2] = labels[1, 3, s2] = labels[1, 4, s2] = True
    acts = torch.zeros(2, 9, 6)
    acts[0, 1, 0] = 1.0
    acts[1, 1, 1] = 2.0
    acts[1, 3, 1] = 0.5
    acts[0, 3, 2] = acts[1, 3, 2] = acts[1, 4, 2] = 1.0
    acts[:, 0, 2] = acts[0, 5:, 2] = acts[1, 6:, 2] = 3.0  # BOS and PAD
    acts[1, 4, 3] = 1.0
    acts[0, 1, 5] = acts[1, 1, 5] = 1.0
    acts[0, 2, :] = -1.0  # negative activations never fire
    data = _Corpus(torch.zeros(2, 9, dtype=torch.long), ["s1", "s2", "i1"], labels, mask)
    return acts, data


def _judge(acts, data, spurious, intended, min_f1=0.2, use_mask=True, use_min=True, first_only=False, ties=False):
    """The judge from the definition, with F1 = 2 tp / (2 tp + fp + fn) counted in numpy."""
    keep = (data.mask.flatten() if use_mask else torch.ones(data.mask.numel(), dtype=torch.bool)).numpy()
    fires = (acts > 0).reshape(-1, acts.shape[-1]).numpy()[keep]

    def best(concepts):
        concepts = concepts[:1] if first_only else concepts
        scores = []
        for c in concepts:
            truth = data.labels[..., data.concept_index(c)].flatten().numpy()[keep][:, None]
            tp, fp, fn = (fires & truth).sum(0), (fires & ~truth).sum(0), (~fires & truth).sum(0)
            scores.append(np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0))
        return np.max(scores, axis=0)

    s, i = best(spurious), best(intended)
    out = ((s >= min_f1) | (not use_min)) & ((s >= i) if ties else (s > i))
    return torch.from_numpy(out)


@lru_cache(maxsize=1)
def _bio_case():
    model, saes = _world()
    data, _, _ = ref.labelled_bios(60, ref.B.GROUPS, "train", seed=5)
    acts = saes[2].encode(ref.resid(model, data.tokens, 2))[..., :128]
    return acts, data


def _judge_mistakes(acts, data, sp, it, min_f1) -> list[Mistake]:
    def variant(**kw):
        return lambda: _judge(acts, data, sp, it, min_f1, **kw)
    return [
        _lazy(variant(use_mask=False), "count only real tokens (`data.mask`): the model also runs over "
                                                   "BOS and padding, and latents fire there."),
        _lazy(variant(use_min=False), "a latent is spurious only if its best spurious F1 is at least "
                                                  "`min_f1`."),
        _lazy(variant(first_only=True), "take the best F1 over *every* concept of each list, not the "
                                                    "first."),
        _lazy(variant(ties=True), "the spurious F1 must be *greater* than the intended one: a tie is not "
                                              "spurious."),
    ]


@check
@torch.no_grad()
def test_judge_by_labels(judge_by_labels) -> None:
    acts, data = _hand_corpus()
    cases = [("the hand case, min_f1=0.2", acts, data, ["s1", "s2"], ["i1"], 0.2),
             ("the hand case, min_f1=0.6", acts, data, ["s1", "s2"], ["i1"], 0.6)]
    bio_acts, bio_data = _bio_case()
    cases.append(("60 bios, 128 latents of resid_pre_2", bio_acts, bio_data,
                  ["bio_person:first", "bio_person:third", "person_marker:first", "person_marker:third"],
                  ["bio_field:medicine", "bio_field:law", "bio_medicine", "bio_law"], 0.2))
    for name, a, d, sp, it, min_f1 in cases:
        got = judge_by_labels(a.clone(), d, list(sp), list(it), min_f1)
        want = _judge(a, d, sp, it, min_f1)
        expect(isinstance(got, Tensor), f"judge_by_labels should return a bool tensor, not {type(got).__name__}.")
        got = got.bool() if got.dtype != torch.bool else got
        assert_tensor(got, want, f"judge_by_labels({name})", mistakes=_judge_mistakes(a, d, sp, it, min_f1))


# -------------------------------------------------------------------------------------------------
# cohen_kappa


@check
@torch.no_grad()
def test_cohen_kappa(cohen_kappa) -> None:
    from sklearn.metrics import cohen_kappa_score

    g = torch.Generator().manual_seed(1)
    cases = [("a hand case", torch.tensor([1, 1, 1, 1, 0, 0]), torch.tensor([1, 1, 1, 0, 0, 1]))]
    for n, rate_a, rate_b in ((40, 0.8, 0.7), (25, 0.2, 0.5), (60, 0.5, 0.5)):
        a = torch.rand(n, generator=g) < rate_a
        b = torch.where(torch.rand(n, generator=g) < 0.6, a, torch.rand(n, generator=g) < rate_b)
        cases.append((f"{n} random judgements", a, b))
    cases.append(("two opposite judges", torch.tensor([1, 0, 1, 0]), torch.tensor([0, 1, 0, 1])))
    for name, a, b in cases:
        a, b = a.bool(), b.bool()
        got = float(cohen_kappa(a.clone(), b.clone()))
        want = float(cohen_kappa_score(a.numpy(), b.numpy()))
        if abs(got - want) > 1e-6:
            p_o = float((a == b).float().mean())
            pa, pb = float(a.float().mean()), float(b.float().mean())
            hints = [(p_o, "that is the raw agreement p_o; subtract the agreement expected by chance."),
                     ((p_o - 0.5) / 0.5, "chance agreement is not 0.5: use each judge's own rate of True, "
                                         "p_e = pa·pb + (1 − pa)(1 − pb)."),
                     ((p_o - (pa * pa + (1 - pa) ** 2)) / (1 - (pa * pa + (1 - pa) ** 2)) if pa not in (0, 1) else None,
                      "p_e takes the rate of *each* judge: pa·pb + (1 − pa)(1 − pb), not pa² + (1 − pa)²."),
                     ((p_o - pa * pb) / (1 - pa * pb), "p_e also counts agreeing on False: pa·pb + (1 − pa)(1 − pb).")]
            hint = next((h for v, h in hints if v is not None and abs(got - v) < 1e-6), "")
            fail(f"cohen_kappa on {name}: got {got:.4f}, expected {want:.4f}." + (f" Hint: {hint}" if hint else ""))
    same = torch.ones(5, dtype=torch.bool)
    got = float(cohen_kappa(same, same.clone()))
    expect(got == 1.0, f"cohen_kappa of two judges that both say True on everything returned {got}; p_e = 1 there, "
                       "and the exercise asks for 1.0.")


# -------------------------------------------------------------------------------------------------
# shift


def _shift_case(seed: int, n: int = 80, d: int = 12, k: int = 30):
    """Synthetic pooled data whose label follows a direction that two latents carry."""
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(k, d, generator=g)
    f = {name: torch.rand(n, k, generator=g) * (torch.rand(n, k, generator=g) < 0.3) for name in ("amb", "test")}
    y = (torch.rand(n, generator=g) < 0.5).long()
    f["amb"][:, 3] += 2.0 * y
    f["amb"][:, 7] += 1.5 * y
    x = {name: f[name] @ W_dec + 0.1 * torch.randn(n, d, generator=g) for name in f}
    probe = (torch.randn(d, generator=g), torch.tensor(0.3))
    return probe, x, f, W_dec, y


def _shift(probe, latents, x, f, W_dec, y, ablate_train=True, ablate_test=True):
    idx = torch.as_tensor(list(latents), dtype=torch.long)
    gone = {name: x[name] - f[name][:, idx] @ W_dec[idx] for name in x}
    test = gone["test"] if ablate_test else x["test"]
    retrained = ref.train_probe(gone["amb"] if ablate_train else x["amb"], y)
    return {"ablated": ref.predict(probe, test), "retrained": ref.predict(retrained, test)}


def _agree(a, b) -> bool:
    """Predictions that differ on at most 2% (a retrained probe may flip a point on its boundary)."""
    return isinstance(a, Tensor) and a.shape == b.shape and float((a.long() != b.long()).float().mean()) <= 0.02


@check
@torch.no_grad()
def test_shift(shift) -> None:
    for seed, latents in ((0, [3, 7]), (1, np.array([3, 7, 11, 20])), (2, [0])):
        probe, x, f, W_dec, y = _shift_case(seed)
        where = f"shift(synthetic data {seed}, latents {list(latents)})"
        got = shift(probe, latents, dict(x), dict(f), W_dec.clone(), y.clone())
        expect(isinstance(got, dict) and {"ablated", "retrained"} <= set(got),
               f"{where} should return a dict with keys 'ablated' and 'retrained'.")
        want = _shift(probe, latents, x, f, W_dec, y)
        for key in ("ablated", "retrained"):
            expect(isinstance(got[key], Tensor) and got[key].shape == want[key].shape,
                   f"{where}[{key!r}] should be a tensor of {len(want[key])} 0/1 predictions.")
            if not _agree(got[key], want[key]):
                wrong = float((got[key].long() != want[key]).float().mean())
                mistakes = [Mistake(lambda a: _agree(a, _shift(probe, latents, x, f, W_dec, y, ablate_test=False)[key]),
                                    "evaluate on the *ablated* test set."),
                            Mistake(lambda a: _agree(a, _shift(probe, latents, x, f, W_dec, y, ablate_train=False)[key]),
                                    "retrain on the *ablated* ambiguous set: a probe trained on the unablated set is "
                                    "the old probe again.")]
                fail(f"{where}[{key!r}]: {wrong:.0%} of the predictions differ from the expected ones.", got[key],
                     mistakes)


# -------------------------------------------------------------------------------------------------
# atp_effects


def _atp(model, saes, clean, corrupt, metric, grad_on="clean", mean=False):
    """AtP computed one layer at a time, with that layer's SAE spliced in as leaves (latents and error):
    their .grad is the gradient the real model sends them, since the splice is exact."""
    names = [ref.hook_name(L) for L in saes]
    _, cache_c = model.run_with_cache(clean, names_filter=names)
    _, cache_p = model.run_with_cache(corrupt, names_filter=names)
    at = clean if grad_on == "clean" else corrupt
    at_cache = cache_c if grad_on == "clean" else cache_p
    out = {}
    for L, sae in saes.items():
        x = at_cache[ref.hook_name(L)]
        f = sae.encode(x).detach().requires_grad_()
        err = (x - sae.decode(f)).detach().requires_grad_()
        with torch.enable_grad():
            m = metric(model.run_with_hooks(at, fwd_hooks=[(ref.hook_name(L), lambda x, hook: sae.decode(f) + err)]))
            (m.mean() if mean else m.sum()).backward()
        fc, fp = sae.encode(cache_c[ref.hook_name(L)]), sae.encode(cache_p[ref.hook_name(L)])
        ec, ep = cache_c[ref.hook_name(L)] - sae.decode(fc), cache_p[ref.hook_name(L)] - sae.decode(fp)
        out[L] = ((fp - fc) * f.grad, ((ep - ec) * err.grad).sum(-1))
    return out


def _effects(got, layers, where) -> dict:
    expect(isinstance(got, dict), f"{where} should return a dict {{layer: (latent effects, error effects)}}, "
                                  f"not {type(got).__name__}.")
    expect(sorted(got) == sorted(layers), f"{where} returned layers {sorted(got)}, expected {sorted(layers)} (the keys "
                                          "of `saes`).")
    for L in layers:
        expect(isinstance(got[L], (tuple, list)) and len(got[L]) == 2,
               f"{where}[{L}] should be a pair (latent effects, error effects).")
    return got


def _compare_effects(got, want, where, mistakes_for) -> None:
    for L in want:
        lat, err = got[L]
        for part, g, w in (("latent effects", lat, want[L][0]), ("error-node effects", err, want[L][1])):
            scale = float(w.abs().max()) + 1e-6
            assert_tensor(g if not isinstance(g, Tensor) else g.detach(), w, f"{where}[{L}] {part}",
                          rtol=1e-3, atol=2e-3 * scale, check_dtype=False, mistakes=mistakes_for(L, part))


@check
@torch.no_grad()
def test_atp_effects(atp_effects) -> None:
    model, saes = _world()
    clean, corrupt = _pairs()
    sub = {L: saes[L] for L in ref.LAYERS}
    where = "atp_effects(clean, corrupt, she_he) on 6 prompt pairs, resid_pre_1..3"
    with torch.no_grad():
        got = _effects(atp_effects(model, sub, clean.clone(), corrupt.clone(), ref.she_he), ref.LAYERS, where)
    want = _atp(model, sub, clean, corrupt, ref.she_he)
    lat_zero = [L for L in ref.LAYERS if isinstance(got[L][0], Tensor) and got[L][0].shape == want[L][0].shape
                and float(got[L][0].abs().max()) == 0 and float(want[L][0].abs().max()) > 0]
    last = max(ref.LAYERS)
    if lat_zero and last not in lat_zero:
        fail(f"{where}: every latent effect at layer(s) {lat_zero} is 0, but not at layer {last}. Hint: no gradient "
             "reached the earlier layers. Splicing each SAE in as decode(f) + err.detach() with f a leaf cuts the graph "
             "at every hook; read the gradient of the real residual stream at each hook (x.retain_grad()) and push it "
             "through W_dec (grad @ W_dec.T), or keep the error term attached, as Marks et al. do.")
    variants = {}

    def variant(name, **kw):
        if name not in variants:
            variants[name] = _atp(model, sub, clean, corrupt, ref.she_he, **kw)
        return variants[name]

    def mistakes(L, part):
        k = 0 if part == "latent effects" else 1
        return [_like(-want[L][k], "the sign: the change is corrupted minus clean (node_corrupt − node_clean)."),
                _lazy(lambda: variant("corrupt", grad_on="corrupt")[L][k], "take the gradient on the *clean* run, not the corrupted one."),
                _lazy(lambda: variant("mean", mean=True)[L][k], "backpropagate the *sum* of the metric over prompts, not its mean: "
                                                    "each prompt's effects are its own."),
                _like(torch.zeros_like(want[L][k]), "the error node changes too: its effect is "
                                                                 "((err_patch − err) * grad).sum(-1)." if k else
                                   "the latent effects are all zero: is the gradient reaching this hook?"),
                Mistake(lambda a: isinstance(a, Tensor) and a.shape[-1] == model.cfg.d_model != want[L][0].shape[-1],
                        "the latents' gradient is grad @ W_dec.T (one value per latent, d_sae of them), not the "
                        "residual-stream gradient itself.")]

    _compare_effects(got, want, where, mistakes)
    # One layer only, another metric: the learner's code must not assume three layers or she - he.
    where = "atp_effects(clean, corrupt, he_she) with saes = {2: resid_pre_2} only"
    got = _effects(atp_effects(model, {2: saes[2]}, clean[:3].clone(), corrupt[:3].clone(), _he_she), [2], where)
    want = _atp(model, {2: saes[2]}, clean[:3], corrupt[:3], _he_she)
    _compare_effects(got, want, where, lambda L, part: [])


# -------------------------------------------------------------------------------------------------
# ig_effects


def _ig(model, saes, clean, corrupt, metric, steps, alphas=None, mean=True):
    """Integrated gradients by interpolating the residual stream itself (decode is linear, so x_α =
    decode(f_α) + err_α = (1 − α) x_clean + α x_corrupt) and pushing its gradient through W_dec."""
    names = [ref.hook_name(L) for L in saes]
    _, cache_c = model.run_with_cache(clean, names_filter=names)
    _, cache_p = model.run_with_cache(corrupt, names_filter=names)
    alphas = [k / steps for k in range(steps)] if alphas is None else alphas
    out = {}
    for L, sae in saes.items():
        xc, xp = cache_c[ref.hook_name(L)], cache_p[ref.hook_name(L)]
        g = torch.zeros_like(xc)
        for a in alphas:
            xa = ((1 - a) * xc + a * xp).requires_grad_()
            with torch.enable_grad():
                metric(model.run_with_hooks(clean, fwd_hooks=[(ref.hook_name(L), lambda x, hook: xa)])).sum().backward()
            g += xa.grad
        g = g / len(alphas) if mean else g
        fc, fp = sae.encode(xc), sae.encode(xp)
        ec, ep = xc - sae.decode(fc), xp - sae.decode(fp)
        out[L] = ((fp - fc) * (g @ sae.W_dec.T), ((ep - ec) * g).sum(-1))
    return out


@check
@torch.no_grad()
def test_ig_effects(ig_effects) -> None:
    model, saes = _world()
    clean, corrupt = _pairs()
    clean, corrupt = clean[:4], corrupt[:4]
    for layers, steps, metric, name in (((1, 3), 4, ref.she_he, "she_he"), ((2,), 10, _he_she, "he_she")):
        sub = {L: saes[L] for L in layers}
        where = f"ig_effects(4 prompt pairs, {name}, steps={steps}) at layers {list(layers)}"
        if steps == 10:
            got = _effects(ig_effects(model, sub, clean.clone(), corrupt.clone(), metric), layers, where + " (default steps)")
        else:
            got = _effects(ig_effects(model, sub, clean.clone(), corrupt.clone(), metric, steps=steps), layers, where)
        want = _ig(model, sub, clean, corrupt, metric, steps)
        cache = {}

        def variant(key, sub=sub, metric=metric, steps=steps, cache=cache):
            if key not in cache:
                alphas = {"from 1/steps": [(k + 1) / steps for k in range(steps)],
                          "both ends": [k / (steps - 1) for k in range(steps)], "sum": None, "atp": [0.0]}[key]
                cache[key] = _ig(model, sub, clean, corrupt, metric, steps, alphas=alphas, mean=key != "sum")
            return cache[key]

        hints = {"from 1/steps": "α runs from 1/steps to 1; use α = k/steps for k = 0 … steps − 1 (a left Riemann "
                                 "sum, as Marks et al.).",
                 "both ends": "α = k/steps for k = 0 … steps − 1, so α = 1 is left out (not k/(steps − 1)).",
                 "sum": "average the gradients over the steps (divide by `steps`), do not sum them.",
                 "atp": "that is AtP: the gradient at the clean point only. Average it over the interpolated points."}

        def mistakes(L, part, variant=variant, want=want):
            k = 0 if part == "latent effects" else 1
            return [_lazy(lambda key=key: variant(key)[L][k], hint) for key, hint in hints.items()] + [
                _like(-want[L][k], "the sign: the change is corrupted minus clean.")]

        _compare_effects(got, want, where, mistakes)
        # completeness, with the learner's own numbers
        m_c = float(metric(model(clean)).sum())
        m_p = float(metric(model(corrupt)).sum())
        for L in layers:
            total = float(got[L][0].sum() + got[L][1].sum())
            expect(abs(total - (m_p - m_c)) <= 0.05 * abs(m_p - m_c) + 1e-3,
                   f"{where}: the effects at layer {L} sum to {total:.3f}, but patching the whole layer moves the "
                   f"metric by {m_p - m_c:.3f} (completeness).")


# -------------------------------------------------------------------------------------------------
# edge_effects


@lru_cache(maxsize=1)
def _edge_case():
    model, saes = _world()
    clean, corrupt = _pairs()
    clean, corrupt = clean[:4], corrupt[:4]
    atp = _atp(model, {1: saes[1], 2: saes[2]}, clean, corrupt, ref.she_he)
    up_delta = saes[1].encode(ref.resid(model, corrupt, 1)) - saes[1].encode(ref.resid(model, clean, 1))
    # down_grad: the metric's gradient at layer 2's latents (from a splice at layer 2 alone)
    x2 = ref.resid(model, clean, 2)
    f2 = saes[2].encode(x2).detach().requires_grad_()
    err2 = (x2 - saes[2].decode(f2)).detach()
    with torch.enable_grad():
        ref.she_he(model.run_with_hooks(clean, fwd_hooks=[(ref.hook_name(2), lambda x, hook: saes[2].decode(f2) + err2)])).sum().backward()
    down_grad = f2.grad.clone()
    down = atp[2][0].sum((0, 1)).abs().argsort(descending=True)[:3].tolist()
    return clean, up_delta, down_grad, down, atp


def _edges(model, saes, tokens, up, down, up_delta, down_grad, down_latents, use_delta=True, use_grad=True):
    """Edges through the residual stream: the gradient with respect to x_up, then through W_dec."""
    x_up = ref.resid(model, tokens, up)
    rows = []
    for d in down_latents:
        xa = x_up.clone().requires_grad_()
        with torch.enable_grad():
            f_down = saes[down].encode(model.run_with_hooks(tokens, stop_at_layer=down,
                                                            fwd_hooks=[(ref.hook_name(up), lambda x, hook: xa)]))
            weight = down_grad[..., d] if use_grad else torch.ones_like(down_grad[..., d])
            (weight * f_down[..., d]).sum().backward()
        grad_f = xa.grad @ saes[up].W_dec.T
        rows.append((grad_f * up_delta).sum((0, 1)) if use_delta else grad_f.sum((0, 1)))
    return torch.stack(rows)


def _finite_difference(model, saes, tokens, up, down, up_delta, down_grad, d, j, eps=1e-2) -> float:
    """(f_down(u + εΔu_j) − f_down(u − εΔu_j)) / 2ε, weighted by down_grad and summed."""
    x_up = ref.resid(model, tokens, up)
    out = []
    for sign in (1, -1):
        shifted = x_up + sign * eps * up_delta[..., j, None] * saes[up].W_dec[j]
        f_down = saes[down].encode(model.run_with_hooks(tokens, stop_at_layer=down,
                                                        fwd_hooks=[(ref.hook_name(up), lambda x, hook: shifted)]))
        out.append(float((down_grad[..., d] * f_down[..., d]).sum()))
    return (out[0] - out[1]) / (2 * eps)


@check
@torch.no_grad()
def test_edge_effects(edge_effects) -> None:
    model, saes = _world()
    tokens, up_delta, down_grad, down, _ = _edge_case()
    where = f"edge_effects(4 prompts, up=1, down=2, down_latents={down})"
    got = edge_effects(model, saes, tokens.clone(), 1, 2, up_delta.clone(), down_grad.clone(), list(down))
    want = _edges(model, saes, tokens, 1, 2, up_delta, down_grad, down)
    expect(isinstance(got, Tensor), f"{where} should return a tensor, not {type(got).__name__}.")
    mistakes = [
        _lazy(lambda: _edges(model, saes, tokens, 1, 2, up_delta, down_grad, down, use_delta=False),
                           "multiply the gradient by up_delta (Δu) before summing: an edge is ∂m/∂d · ∂d/∂u · Δu."),
        _lazy(lambda: _edges(model, saes, tokens, 1, 2, up_delta, down_grad, down, use_grad=False),
                           "weight each downstream latent by down_grad (∂m/∂d) before the backward pass."),
        Mistake(lambda a: isinstance(a, Tensor) and a.shape == want.T.shape != want.shape,
                "one row per downstream latent: shape (len(down_latents), d_sae of the upstream SAE)."),
    ]
    assert_tensor(got.detach(), want, where, rtol=1e-3, atol=1e-3 * (float(want.abs().max()) + 1e-6),
                  check_dtype=False, mistakes=mistakes)
    # finite differences on the strongest edges (a check of the definition, not only of the reference)
    flat = want.abs().flatten().argsort(descending=True)[:3].tolist()
    for k in flat:
        i, j = divmod(k, want.shape[1])
        fd = _finite_difference(model, saes, tokens, 1, 2, up_delta, down_grad, down[i], j)
        expect(abs(float(got[i, j]) - fd) <= 0.05 * abs(fd) + 1e-3,
               f"{where}: edge (L1 #{j} -> L2 #{down[i]}) is {float(got[i, j]):.4f}, but finite differences give {fd:.4f}.")
    one = edge_effects(model, saes, tokens[:1].clone(), 1, 3, up_delta[:1].clone(), down_grad[:1].clone(), [down[0]])
    want_one = _edges(model, saes, tokens[:1], 1, 3, up_delta[:1], down_grad[:1], [down[0]])
    assert_tensor(one.detach(), want_one, "edge_effects(one prompt, up=1, down=3)", rtol=1e-3,
                  atol=1e-3 * (float(want_one.abs().max()) + 1e-6), check_dtype=False)


# -------------------------------------------------------------------------------------------------
# circuit_metric


def _circuit(model, sae, layer, tokens, metric, keep, zero=False, error_kept=None, dim=0):
    """The residual stream rebuilt from kept and mean (or zero) nodes, written with index arithmetic."""
    x = ref.resid(model, tokens, layer)
    f = sae.encode(x)
    err = x - sae.decode(f)
    f_mean = torch.zeros_like(f) if zero else f.mean(dim, keepdim=True).expand_as(f)
    err_mean = torch.zeros_like(err) if zero else err.mean(dim, keepdim=True).expand_as(err)
    k_lat = keep[None, :, :-1].expand_as(f)
    k_err = keep[None, :, -1].expand(err.shape[:2]) if error_kept is None else torch.full(err.shape[:2], error_kept)
    f_new = f_mean.clone()
    f_new[k_lat] = f[k_lat]
    err_new = err_mean.clone()
    err_new[k_err] = err[k_err]
    x_new = f_new @ sae.W_dec + sae.b_dec + err_new
    return metric(model.run_with_hooks(tokens, fwd_hooks=[(ref.hook_name(layer), lambda x, hook: x_new)]))


@check
@torch.no_grad()
def test_circuit_metric(circuit_metric) -> None:
    model, saes = _world()
    clean, corrupt = _pairs()
    tokens = torch.cat([clean[:4], corrupt[:4]])
    L, sae = 2, saes[2]
    n_pos, d_sae = tokens.shape[1], sae.W_dec.shape[0]
    every = torch.ones(n_pos, d_sae + 1, dtype=torch.bool)
    got = circuit_metric(model, sae, L, tokens.clone(), ref.she_he, every.clone())
    assert_tensor(got, ref.she_he(model(tokens)), "circuit_metric(keep everything), which must be the model itself",
                  atol=1e-4, rtol=1e-4)
    nothing = torch.zeros_like(every)
    x_mean = ref.resid(model, tokens, L).mean(0, keepdim=True).expand(len(tokens), -1, -1)
    want = ref.she_he(model.run_with_hooks(tokens, fwd_hooks=[(ref.hook_name(L), lambda x, hook: x_mean)]))
    got = circuit_metric(model, sae, L, tokens.clone(), ref.she_he, nothing.clone())
    assert_tensor(got, want, "circuit_metric(keep nothing), which must be the model with the residual stream at its "
                             "mean over the prompts", atol=1e-4, rtol=1e-4,
                  mistakes=[_lazy(lambda: _circuit(model, sae, L, tokens, ref.she_he, nothing, zero=True),
                                               "mean-ablate (the mean over the prompts), not zero-ablate."),
                            _lazy(lambda: _circuit(model, sae, L, tokens, ref.she_he, nothing, error_kept=True),
                                               "the error node is a node too: mean-ablate it unless keep[:, -1] says "
                                               "to keep it."),
                            _lazy(lambda: _circuit(model, sae, L, tokens, ref.she_he, nothing, dim=1),
                                               "the mean is over the prompts (dimension 0), at each position, not over "
                                               "positions.")])
    g = torch.Generator().manual_seed(3)
    keep = torch.rand(n_pos, d_sae + 1, generator=g) < 0.3
    keep[:, -1] = torch.tensor([i % 2 == 0 for i in range(n_pos)])
    want = _circuit(model, sae, L, tokens, ref.she_he, keep)
    got = circuit_metric(model, sae, L, tokens.clone(), ref.she_he, keep.clone())
    assert_tensor(got, want, "circuit_metric(a random 30% of the nodes, error kept at even positions)", atol=1e-4, rtol=1e-4,
                  mistakes=[_lazy(lambda: _circuit(model, sae, L, tokens, ref.she_he, ~keep),
                                               "keep the nodes where `keep` is True and ablate the others, not the "
                                               "reverse."),
                            _lazy(lambda: _circuit(model, sae, L, tokens, ref.she_he, keep, zero=True),
                                               "mean-ablate (the mean over the prompts), not zero-ablate."),
                            _lazy(lambda: _circuit(model, sae, L, tokens, ref.she_he, keep, error_kept=True),
                                               "the last column of `keep` says where the error node is kept; elsewhere "
                                               "mean-ablate it."),
                            _lazy(lambda: _circuit(model, sae, L, tokens, ref.she_he, keep, error_kept=False),
                                               "the last column of `keep` says where the error node is kept.")])


# -------------------------------------------------------------------------------------------------
# ablation_hooks


def _ablated_metric(model, saes, latents, tokens, mode="right"):
    """The metric with the latents ablated, written as decode(f) - decode(f without them)."""
    by = {}
    for L, j in latents:
        by.setdefault(L, []).append(j)
    last = list(by)[-1] if mode == "late binding, in order" else max(by)
    mode = "late binding" if mode.startswith("late binding") else mode

    def hook_for(L):
        def fn(x, hook):
            sae = saes[last] if mode == "late binding" else saes[L]
            idx = by[last] if mode == "late binding" else by[L]
            f = sae.encode(x)
            f_off = f.clone()
            f_off[..., idx] = 0
            if mode == "no error":
                return sae.decode(f_off)
            if mode == "b_dec":
                return x - sae.decode(f - f_off)
            if mode == "last position":
                out = x.clone()
                out[:, -1] = (x - (sae.decode(f) - sae.decode(f_off)))[:, -1]
                return out
            return x - (sae.decode(f) - sae.decode(f_off))
        return fn

    return ref.she_he(model.run_with_hooks(tokens, fwd_hooks=[(ref.hook_name(L), hook_for(L)) for L in by]))


@check
@torch.no_grad()
def test_ablation_hooks(ablation_hooks) -> None:
    model, saes = _world()
    clean, corrupt = _pairs()
    tokens = torch.cat([clean[:3], corrupt[:3]])
    latents = [(3, 278), (1, 32), (1, 58), (2, 355), (1, 5)]
    hooks = ablation_hooks(saes, list(latents))
    expect(isinstance(hooks, (list, tuple)) and all(isinstance(h, (list, tuple)) and len(h) == 2 for h in hooks),
           "ablation_hooks should return a list of (hook name, function) pairs.")
    names = sorted(h[0] for h in hooks)
    expect(names == [ref.hook_name(L) for L in (1, 2, 3)],
           f"ablation_hooks for latents at layers 1, 2 and 3 returned hooks at {names}; expected one hook per layer, "
           f"at {[ref.hook_name(L) for L in (1, 2, 3)]}.")
    got = ref.she_he(model.run_with_hooks(tokens, fwd_hooks=list(hooks)))
    want = _ablated_metric(model, saes, latents, tokens)
    mistakes = [_lazy(lambda m=m: _ablated_metric(model, saes, latents, tokens, m), hint) for m, hint in (
        ("no error", "keep the SAE's error term: subtract the chosen latents' contributions from x, do not replace x "
                     "by the reconstruction."),
        ("b_dec", "sae.decode adds b_dec: subtract only f[..., idx] @ W_dec[idx]."),
        ("late binding", "every hook uses the last layer's SAE and latents: bind them as default arguments in the loop "
                         "(def fn(x, hook, idx=idx, sae=sae))."),
        ("late binding, in order", "every hook uses the last layer's SAE and latents: bind them as default arguments in "
                                   "the loop (def fn(x, hook, idx=idx, sae=sae))."),
        ("last position", "ablate at every position, not only the last."))]
    assert_tensor(got, want, "she_he of 6 prompts with (3, 278), (1, 32), (1, 58), (2, 355), (1, 5) ablated",
                  atol=1e-4, rtol=1e-4, mistakes=mistakes)
    one = ablation_hooks(saes, [(2, 7)])
    expect(len(one) == 1 and one[0][0] == ref.hook_name(2), "ablation_hooks([(2, 7)]) should return one hook, at "
                                                             f"{ref.hook_name(2)}.")
    got = ref.she_he(model.run_with_hooks(tokens[:1], fwd_hooks=list(one)))
    assert_tensor(got, _ablated_metric(model, saes, [(2, 7)], tokens[:1]), "she_he of one prompt with (2, 7) ablated",
                  atol=1e-4, rtol=1e-4)


# -------------------------------------------------------------------------------------------------
# debias_latents (capstone, graded on content)

MAX_LATENTS, MAX_GAP_LEFT, MAX_LOSS_RISE = 20, 0.80, 0.08


@lru_cache(maxsize=1)
def _eval_setup():
    from utils.world import labelled_corpus

    model, saes = _world()
    names = list(ref.F.NAMES)
    pairs_sel = [ref.profession_pairs(model, fr, names) for fr in ref.SELECT_FRAMES]
    pairs_eval = [ref.profession_pairs(model, fr, names[10:]) for fr in ref.EVAL_FRAMES]
    corpus = labelled_corpus(100)
    return pairs_sel, pairs_eval, corpus.tokens[:16], corpus.mask[:16]  # the notebook's 16 documents


def _gap(model, pairs, hooks) -> float:
    return float(np.mean([float(ref.she_he(model.run_with_hooks(c, fwd_hooks=hooks)).mean()
                                - ref.she_he(model.run_with_hooks(k, fwd_hooks=hooks)).mean()) for c, k in pairs]))


def _loss(model, tokens, mask, hooks) -> float:
    per_token = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
    return float((per_token * mask[:, 1:]).sum() / mask[:, 1:].sum())


@check
@torch.no_grad()
def test_debias_latents(debias_latents) -> None:
    model, saes = _world()
    pairs_sel, pairs_eval, tokens, mask = _eval_setup()
    chosen = debias_latents(model, saes, [tuple(t.clone() for t in p) for p in pairs_sel])
    expect(isinstance(chosen, (list, tuple)), f"debias_latents should return a list of (layer, latent) pairs, not "
                                              f"{type(chosen).__name__}.")
    try:
        chosen = [(int(L), int(j)) for L, j in chosen]
    except (TypeError, ValueError):
        fail("debias_latents should return (layer, latent) pairs of ints, e.g. [(1, 32), (3, 278)].")
    expect(0 < len(chosen) <= MAX_LATENTS, f"debias_latents returned {len(chosen)} latents; choose between 1 and "
                                           f"{MAX_LATENTS}.")
    expect(len(set(chosen)) == len(chosen), "debias_latents returned the same latent twice.")
    d_sae = saes[1].W_dec.shape[0]
    bad = [c for c in chosen if c[0] not in ref.LAYERS or not 0 <= c[1] < d_sae]
    expect(not bad, f"debias_latents returned {bad}: layers are {ref.LAYERS}, latents 0 … {d_sae - 1}.")
    hooks = ref.ablation_hooks(saes, chosen)
    left = _gap(model, pairs_eval, hooks) / _gap(model, pairs_eval, [])
    rise = _loss(model, tokens, mask, hooks) - _loss(model, tokens, mask, [])
    expect(left <= MAX_GAP_LEFT, f"with your {len(chosen)} latents ablated, {left:.2f} of the bias is left on the "
                                 f"evaluation wordings; the capstone asks for at most {MAX_GAP_LEFT:.2f}.")
    expect(rise < MAX_LOSS_RISE, f"your {len(chosen)} latents remove the bias (gap left {left:.2f}) but raise the "
                                 f"held-out loss by {rise:.3f} nats; keep it under {MAX_LOSS_RISE}.")
    print(f"gap left on the evaluation wordings {left:.2f}, held-out loss +{rise:.3f} nats")
