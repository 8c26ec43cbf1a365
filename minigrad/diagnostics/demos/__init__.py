"""The classic gradient experiments, run by ``minigrad demo NAME``.

Each module has ``run(steps, seed, plot)``: it trains, prints what it shows in
a few lines and a table, optionally writes a PNG, and returns its numbers.
"""

from . import batchnorm, clipping, exploding, train, vanishing

DEMOS = {
    "vanishing": vanishing,
    "exploding": exploding,
    "clipping": clipping,
    "batchnorm": batchnorm,
    "train": train,
}

__all__ = ["DEMOS"]
