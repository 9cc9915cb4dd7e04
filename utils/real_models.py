"""Real pretrained models (GPT-2 small and its public SAEs), for when a network is there.

Every exercise function is model-agnostic, so the chapters can swap the course world for
GPT-2 small. Offline (or with HF_HUB_OFFLINE=1 and nothing cached) these fail in one clear
line pointing back to the course world instead of a long download traceback.
"""

from __future__ import annotations

import os
import socket

HUB_HOST = "huggingface.co"
GPT2_RELEASES = ("gpt2-small-res-jb", "gpt2-small-hook-z-kk", "gpt2-small-res-jb-feature-splitting")


class HubUnavailable(RuntimeError):
    """Raised instead of a download traceback when a hub model cannot be reached."""


def hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached(repo_id: str, filename: str = "config.json") -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def _offline_message(what: str) -> str:
    return (f"{what} needs the Hugging Face hub, which this machine cannot reach (offline). "
            "Use the course world instead: `from utils.world import load_model`.")


def load_gpt2_small(device: str = "cpu"):
    """GPT-2 small as a `HookedSAETransformer` (downloads ~500 MB the first time)."""
    if not (_cached("gpt2") or hub_reachable()):
        raise HubUnavailable(_offline_message("GPT-2 small"))
    from sae_lens import HookedSAETransformer

    return HookedSAETransformer.from_pretrained("gpt2", device=device)


def check_release(release: str, sae_id: str | None = None) -> None:
    """Validate a SAE release (and id) against sae_lens's shipped directory, offline."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release not in directory:
        close = [r for r in directory if release.split("-")[0] in r][:8]
        raise ValueError(f"Unknown SAE release {release!r}. Some known releases: {close}")
    if sae_id is not None and sae_id not in directory[release].saes_map:
        ids = list(directory[release].saes_map)[:6]
        raise ValueError(f"Release {release!r} has no SAE {sae_id!r}; its ids look like {ids} ...")


def load_pretrained_sae(release: str, sae_id: str, device: str = "cpu"):
    """A public SAE from sae_lens's directory (validated offline before any download)."""
    check_release(release, sae_id)
    repo = get_release_repo(release)
    if not (_cached(repo, "README.md") or hub_reachable()):
        raise HubUnavailable(_offline_message(f"The SAE {release}/{sae_id}"))
    from sae_lens import SAE

    return SAE.from_pretrained(release=release, sae_id=sae_id, device=device)


def get_release_repo(release: str) -> str:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()[release].repo_id
