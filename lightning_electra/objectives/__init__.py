"""Pre-training objectives, one file each: a small subclass of `PretrainModule` (lightning_electra/module.py) stating
only what makes it different, with its own options (an `Options` dataclass: the config section named after the
objective) and its own checks (`check_config`).

This file is the registry: the name a config's `variant` gives each objective, and the class that implements it. It
imports nothing, so a variant's name is checked in milliseconds; `objective` loads a class with torch.
"""

from __future__ import annotations

import importlib
from typing import Any

OBJECTIVES = {  # variant: <module under lightning_electra/objectives/>.<class>
    "bert": "bert.BertMLM",
    "electra": "electra.Electra",
    "two-stage": "two_stage.TwoStage",
    "adversarial": "adversarial.Adversarial",
    "electra-15": "electra_15.Electra15",
    "replace-mlm": "replace_mlm.ReplaceMLM",
    "all-tokens-mlm": "all_tokens_mlm.AllTokensMLM",
    "amos": "amos.Amos",
    "no-pretraining": "no_pretraining.NoPretraining",
}


def objective(variant: str) -> Any:
    """The class of a registered objective (a `PretrainModule` subclass)."""
    module, name = OBJECTIVES[variant].rsplit(".", 1)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def section(variant: str) -> str:
    """The config section that holds an objective's own options: its name, with `_` for `-`."""
    return variant.replace("-", "_")


def option_sections() -> dict[str, type]:
    """Every objective's options dataclass, by its config section (loads every objective)."""
    return {section(v): cls.Options for v in OBJECTIVES if (cls := objective(v)).Options is not None}
