"""Loading the course world's sparse dictionaries (all offline, in sae_lens format).

    from utils.world.dictionaries import load_dictionary, load_transcoders, replacement_model
    sae = load_dictionary("resid_pre_2")            # any folder name of artifacts/dictionaries
    tcs = load_transcoders()                         # {layer: JumpReLUTranscoder}
    rm = replacement_model()                         # circuit_tracer model with the course weights

Names: resid_pre_{L}, resid_post_{last}, attn_z_{L}, mlp_post_{L}, transcoder_{L}, and the
feature-splitting family resid_pre_{mid}_w{width} (plus resid_pre_{mid} itself).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .model import DICT_DIR, WORLD_NAME


def available_dictionaries(folder: Path = DICT_DIR) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / "cfg.json").exists())


def load_dictionary(name: str, device: str = "cpu", folder: Path = DICT_DIR):
    """One SAE or transcoder by folder name, via `SAE.load_from_disk` (no network)."""
    import warnings

    from sae_lens import SAE

    path = folder / name
    if not (path / "cfg.json").exists():
        have = available_dictionaries(folder)
        hint = f"Available: {', '.join(have)}." if have else "None are present: run `python -m utils.world train-dicts`."
        raise FileNotFoundError(f"No course dictionary named {name!r} in {folder}. {hint}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sae_lens warns about from_pretrained kwargs we do not use
        return SAE.load_from_disk(str(path), device=device)


def _by_layer(prefix: str, n_layers: int, device: str, folder: Path) -> dict:
    return {layer: load_dictionary(f"{prefix}_{layer}", device, folder) for layer in range(n_layers)}


def load_resid_saes(n_layers: int = 4, device: str = "cpu", folder: Path = DICT_DIR) -> dict:
    """{layer: SAE on blocks.{layer}.hook_resid_pre}."""
    return _by_layer("resid_pre", n_layers, device, folder)


def load_attn_saes(n_layers: int = 4, device: str = "cpu", folder: Path = DICT_DIR) -> dict:
    """{layer: SAE on blocks.{layer}.attn.hook_z (heads concatenated)}."""
    return _by_layer("attn_z", n_layers, device, folder)


def load_transcoders(n_layers: int = 4, device: str = "cpu", folder: Path = DICT_DIR) -> dict:
    """{layer: JumpReLUTranscoder from ln2.hook_normalized to hook_mlp_out}."""
    return _by_layer("transcoder", n_layers, device, folder)


def load_width_family(layer: int = 2, device: str = "cpu", folder: Path = DICT_DIR) -> dict:
    """{width: SAE} on blocks.{layer}.hook_resid_pre, for feature splitting."""
    saes = {}
    for name in available_dictionaries(folder):
        if name == f"resid_pre_{layer}" or name.startswith(f"resid_pre_{layer}_w"):
            sae = load_dictionary(name, device, folder)
            saes[sae.cfg.d_sae] = sae
    return dict(sorted(saes.items()))


def transcoder_set(transcoders: dict, device: str = "cpu", scan: str = WORLD_NAME):
    """Wrap sae_lens JumpReLU transcoders as a circuit_tracer `TranscoderSet`; `scan` names the world
    (its graphs carry it, and the graph explorer reads it)."""
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet

    layers = {}
    for layer, tc in transcoders.items():
        single = SingleLayerTranscoder(
            d_model=tc.cfg.d_in, d_transcoder=tc.cfg.d_sae, layer_idx=layer, device=torch.device(device),
            activation_function=JumpReLU(tc.threshold.detach().clone()), dtype=torch.float32,
        )
        with torch.no_grad():
            single.W_enc.copy_(tc.W_enc.T)  # circuit_tracer stores the encoder as (d_transcoder, d_model)
            single.W_dec.copy_(tc.W_dec)
            single.b_enc.copy_(tc.b_enc)
            single.b_dec.copy_(tc.b_dec)
        layers[layer] = single
    first = transcoders[0].cfg.metadata
    in_hook = first.hook_name.split(".", 2)[2]  # "blocks.0.ln2.hook_normalized" -> "ln2.hook_normalized"
    out_hook = first.hook_name_out.split(".", 2)[2]
    return TranscoderSet(layers, feature_input_hook=in_hook, feature_output_hook=out_hook, scan=scan)


def remap_for_replacement(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename plain HookedTransformer weights to circuit_tracer's wrapped module names.

    circuit_tracer wraps each MLP as `mlp.old_mlp` and the unembedding as `unembed.old_unembed`;
    loading an unmapped state dict with strict=False silently leaves those random.
    """
    out = {}
    for key, value in state_dict.items():
        if ".mlp." in key:
            key = key.replace(".mlp.", ".mlp.old_mlp.")
        elif key.startswith("unembed."):
            key = key.replace("unembed.", "unembed.old_unembed.", 1)
        out[key] = value
    return out


def _silence_replacement_model_del(cls) -> None:
    """Work around a circuit_tracer bug: `TransformerLensReplacementModel.__del__` resets hooks,
    which raises a TypeError traceback when it runs during interpreter shutdown."""
    original = cls.__del__
    if getattr(original, "_course_patched", False):
        return

    def quiet_del(self):
        try:
            original(self)
        except Exception:  # only ever seen at shutdown, when torch is half torn down
            pass

    quiet_del._course_patched = True
    cls.__del__ = quiet_del


def replacement_model(model=None, transcoders: dict | None = None, device: str = "cpu"):
    """A circuit_tracer `TransformerLensReplacementModel` with the course weights and transcoders."""
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel

    from . import load_model

    _silence_replacement_model_del(TransformerLensReplacementModel)

    model = model or load_model(device)
    transcoders = transcoders or load_transcoders(model.cfg.n_layers, device)
    rm = TransformerLensReplacementModel.from_config(model.cfg, transcoder_set(transcoders, device, model.cfg.model_name),
                                                     tokenizer=model.tokenizer)
    missing, unexpected = rm.load_state_dict(remap_for_replacement(model.state_dict()), strict=False)
    unexpected = [k for k in unexpected if "transcoders" not in k]
    wrong = [k for k in missing if not k.startswith("transcoders.")] + unexpected
    if wrong:
        raise RuntimeError(f"circuit_tracer's model layout changed; unmatched weights: {wrong[:5]}")
    rm.eval()
    return rm
