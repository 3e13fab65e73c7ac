"""Chainer's optimizers, one module per family."""
from fast.optimizers.adagrad import AdaDelta, AdaGrad  # NOQA
from fast.optimizers.adam import AdaBound, Adam, AdamW, AMSBound, AMSGrad  # NOQA
from fast.optimizers.msvag import MSVAG  # NOQA
from fast.optimizers.rmsprop import RMSprop, RMSpropGraves  # NOQA
from fast.optimizers.sgd import SGD, CorrectedMomentumSGD, MomentumSGD, NesterovAG  # NOQA
from fast.optimizers.smorms3 import SMORMS3  # NOQA
