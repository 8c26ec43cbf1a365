"""Optimizers and learning-rate schedules with PyTorch's names and update rules.

from minigrad import optim

opt = optim.AdamW(model.parameters(), lr=3e-4)
sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
for epoch in range(100):
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    sched.step()
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
