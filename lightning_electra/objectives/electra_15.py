"""ELECTRA-15%: the discriminator loss over the masked positions only (paper Table 5), everything else as ELECTRA."""

from lightning_electra.objectives.electra import Electra


class Electra15(Electra):
    def scored_positions(self, batch, masked):
        return masked.is_masked & batch["attention_mask"].bool()
