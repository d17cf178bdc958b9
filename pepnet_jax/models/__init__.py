"""Model registry: ``build_model(config.model, feature_infos, data_spec)``.

A model file registers its factory itself (``@register('my_model')``); nothing
central lists the models. ``config.model.name`` is looked up in the registry,
then as a module of this package (``pepnet_jax/models/<name>.py`` is imported,
so a new file here registers itself on first use), then, for a dotted name
such as ``my_project.models.wide``, as an importable module that registers
that full name. What a model must provide: ``models/contract.py``.

A factory is ``fn(model_config, feature_infos, data_spec, common) -> Module``;
``common`` holds the arguments every model takes (features, num_tasks,
num_domains, embed_dim, dtype, row_multiple, dropout).
"""

from __future__ import annotations

# The registry lives in models/registry.py (model files import it, not this package);
# importing the bundled model files here registers them.
from pepnet_jax.models.registry import MODELS, build_model, register, resolve  # noqa: F401
from pepnet_jax.models import baselines, linear, pepnet  # noqa: F401,E402  (register themselves)
from pepnet_jax.models.pepnet import PEPNet  # noqa: F401,E402
