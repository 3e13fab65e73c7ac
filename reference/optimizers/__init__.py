"""Chainer's 15 optimizers, one module per family."""

from reference.optimizers.ada_delta import AdaDelta, AdaDeltaRule
from reference.optimizers.ada_grad import AdaGrad, AdaGradRule
from reference.optimizers.adam import AdaBound, Adam, AdamRule, AdamW, AMSBound, AMSGrad
from reference.optimizers.corrected_momentum_sgd import (CorrectedMomentumSGD,
                                                         CorrectedMomentumSGDRule)
from reference.optimizers.momentum_sgd import MomentumSGD, MomentumSGDRule
from reference.optimizers.msvag import MSVAG, MSVAGRule
from reference.optimizers.nesterov_ag import NesterovAG, NesterovAGRule
from reference.optimizers.rmsprop import RMSprop, RMSpropRule
from reference.optimizers.rmsprop_graves import RMSpropGraves, RMSpropGravesRule
from reference.optimizers.sgd import SGD, SGDRule
from reference.optimizers.smorms3 import SMORMS3, SMORMS3Rule

__all__ = ["SGD", "MomentumSGD", "CorrectedMomentumSGD", "NesterovAG", "AdaGrad", "AdaDelta",
           "RMSprop", "RMSpropGraves", "Adam", "AdamW", "AMSGrad", "AdaBound", "AMSBound",
           "MSVAG", "SMORMS3",
           "SGDRule", "MomentumSGDRule", "CorrectedMomentumSGDRule", "NesterovAGRule",
           "AdaGradRule", "AdaDeltaRule", "RMSpropRule", "RMSpropGravesRule", "AdamRule",
           "MSVAGRule", "SMORMS3Rule"]
