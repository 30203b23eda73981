"""Pre-training objectives. Each is a small subclass of `PretrainModule` stating only what makes it different."""

from lightning_electra.variants.bert import BertMLM
from lightning_electra.variants.electra import Electra

VARIANTS = {"bert": BertMLM, "electra": Electra}
