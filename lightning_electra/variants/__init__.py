"""Pre-training objectives. Each is a small subclass of `PretrainModule` stating only what makes it different."""

from lightning_electra.variants.adversarial import Adversarial
from lightning_electra.variants.all_tokens_mlm import AllTokensMLM
from lightning_electra.variants.amos import Amos
from lightning_electra.variants.bert import BertMLM
from lightning_electra.variants.electra import Electra
from lightning_electra.variants.electra_15 import Electra15
from lightning_electra.variants.replace_mlm import ReplaceMLM
from lightning_electra.variants.two_stage import TwoStage

VARIANTS = {
    "bert": BertMLM,
    "electra": Electra,
    "two-stage": TwoStage,
    "adversarial": Adversarial,
    "electra-15": Electra15,
    "replace-mlm": ReplaceMLM,
    "all-tokens-mlm": AllTokensMLM,
    "amos": Amos,
}
