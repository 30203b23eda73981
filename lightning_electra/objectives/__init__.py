"""Pre-training objectives. Each is a small subclass of `PretrainModule` (lightning_electra/module.py) stating only what
makes it different; OBJECTIVES maps a config's `variant` to its class."""

from lightning_electra.objectives.adversarial import Adversarial
from lightning_electra.objectives.all_tokens_mlm import AllTokensMLM
from lightning_electra.objectives.amos import Amos
from lightning_electra.objectives.bert import BertMLM
from lightning_electra.objectives.electra import Electra
from lightning_electra.objectives.electra_15 import Electra15
from lightning_electra.objectives.no_pretraining import NoPretraining
from lightning_electra.objectives.replace_mlm import ReplaceMLM
from lightning_electra.objectives.two_stage import TwoStage

OBJECTIVES = {
    "bert": BertMLM,
    "electra": Electra,
    "two-stage": TwoStage,
    "adversarial": Adversarial,
    "electra-15": Electra15,
    "replace-mlm": ReplaceMLM,
    "all-tokens-mlm": AllTokensMLM,
    "amos": Amos,
    "no-pretraining": NoPretraining,
}
