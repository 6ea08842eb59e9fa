"""The critic: image + prompt -> ``Critique``. Prompts (templates), parsing and transport are separate modules.

- ``parse_critique(text, image_size, convention, processed_size)``: the one boundary where a VLM's text becomes
  validated edits (``parse.py``);
- ``load_template`` / ``Template``: versioned instruction files (``prompts.py``, ``templates/``);
- ``LocalCritic.from_pretrained(hub_id_or_folder)``: transformers in this process (``local.py``);
- ``RemoteCritic(base_url, model)``: any OpenAI-compatible endpoint (``remote.py``, which lists vLLM, SGLang,
  LMDeploy, DashScope and OpenAI examples);
- ``RecordedCritic(answers)``: answers written in advance by a person or saved from a VLM (``recorded.py``);
- ``load_critic(spec)``: a URL gives a ``RemoteCritic``, a file a ``RecordedCritic``, ``"world"`` the closed world's
  detector (``artaug.world.critic.WorldCritic``, for world paintings only), anything else a ``LocalCritic``;
  ``critic_from_config(CriticConfig)`` does the same for a ``[critic]`` section (the one way commands build critics);
- ``CachedCritic(critic, folder)``: the same methods, answered from an on-disk cache when possible (``cache.py``);
- ``draw_critique(image, critique)``: boxes and local prompts drawn on the painting (``draw.py``).

Every backend has ``critique(image, prompt)``, ``critique_batch(images, prompts)``, ``ask(images, text,
max_new_tokens)`` (raw text, for the pairwise judge), ``model_id``, ``name`` and ``template_version``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from artaug.config import CriticConfig
from artaug.critic.base import Critic, CriticError
from artaug.critic.cache import CachedCritic, CritiqueCache, image_hash
from artaug.critic.draw import draw_critique
from artaug.critic.parse import CONVENTIONS, parse_critique
from artaug.critic.prompts import Template, load_template
from artaug.critic.recorded import RecordedCritic

if TYPE_CHECKING:
    from artaug.critic.local import LocalCritic
    from artaug.critic.remote import RemoteCritic

__all__ = [
    "CONVENTIONS",
    "CachedCritic",
    "Critic",
    "CriticError",
    "CritiqueCache",
    "LocalCritic",
    "RecordedCritic",
    "RemoteCritic",
    "Template",
    "critic_from_config",
    "draw_critique",
    "image_hash",
    "is_url",
    "is_weightless",
    "load_critic",
    "load_template",
    "parse_critique",
]


def is_url(spec: str) -> bool:
    return str(spec).startswith(("http://", "https://"))


WORLD = "world"  # the critic spec of the closed world's detector (a folder of that name is spelled ``./world``)


def is_weightless(spec: str) -> bool:
    """Whether a critic spec loads no model weights (an endpoint, notes written in advance, the world's detector),
    so it can be built, and its errors reported, before the painter loads."""
    return spec == WORLD or is_url(spec) or Path(spec).is_file()


def load_critic(spec: str, **options: Any) -> Critic:
    """A critic from one string: an ``http(s)://`` base URL gives a ``RemoteCritic`` (``model=`` names the served
    model), an existing file a ``RecordedCritic`` (answers written in advance), ``"world"`` the closed world's
    ``WorldCritic``, anything else (a hub id or a local folder) a ``LocalCritic.from_pretrained``. ``options`` go to
    those."""
    if spec == WORLD:
        from artaug.world.critic import WorldCritic

        return WorldCritic(**{k: v for k, v in options.items() if k == "max_edits"})
    if Path(spec).is_file():
        from artaug.critic.recorded import RecordedCritic

        return RecordedCritic.from_file(spec, **{k: v for k, v in options.items() if k in ("max_edits", "convention")})
    if is_url(spec):
        from artaug.critic.remote import RemoteCritic

        return RemoteCritic(spec, **options)
    from artaug.critic.local import LocalCritic

    return LocalCritic.from_pretrained(spec, **options)


def critic_from_config(config: CriticConfig) -> Critic:
    """The critic a ``[critic]`` section names, behind its critique cache when ``cache_dir`` is set."""
    options: dict[str, Any] = {"max_edits": config.max_edits, "convention": config.convention}
    if config.template != "auto":
        options["template"] = config.template
    if is_url(config.model):
        options.update(
            model=config.served_model or None,
            api_key_env=config.api_key_env,
            timeout=config.timeout,
            max_retries=config.max_retries,
            max_new_tokens=config.max_new_tokens,
        )
    elif config.model != WORLD and not Path(config.model).is_file():
        options.update(
            dtype=config.dtype, device=config.device, max_new_tokens=config.max_new_tokens, park=config.park
        )
    critic = load_critic(config.model, **options)
    if config.cache_dir:
        critic = CachedCritic(critic, config.cache_dir, max_edits=config.max_edits)
    return critic


def __getattr__(name: str) -> Any:
    # The backends import torch / openai; load them only when asked for.
    if name == "LocalCritic":
        from artaug.critic.local import LocalCritic

        return LocalCritic
    if name == "RemoteCritic":
        from artaug.critic.remote import RemoteCritic

        return RemoteCritic
    raise AttributeError(f"module 'artaug.critic' has no attribute {name!r}")
