"""Train a 64-256-256-10 MLP on the 8x8 digits: BatchNorm, ReLU, AdamW, clipping.

    python examples/train_digits.py [--epochs 30] [--seed 0]

Prints one line per epoch (loss, gradient norm before clipping, test
accuracy) and reaches about 97% test accuracy in a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import time

import minigrad as mg
from minigrad import nn, optim
from minigrad.data import DataLoader, digits


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(),
        nn.Linear(256, 10),
    )


def accuracy(model: nn.Module, x: mg.Tensor, y: mg.Tensor) -> float:
    model.eval()
    with mg.no_grad():
        predicted = model(x).max(dim=1).indices
    model.train()
    return float((predicted == y).numpy().mean())


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    mg.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = digits(seed=args.seed)
    loader = DataLoader((x_train, y_train), batch_size=64, shuffle=True, drop_last=True)
    x_test, y_test = mg.tensor(x_test), mg.tensor(y_test)

    model = build_model()
    optimizer = optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    loss_fn = nn.CrossEntropyLoss()

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        total, norms, batches = 0.0, 0.0, 0
        for xb, yb in loader:
            loss = loss_fn(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            norms += nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0).item()
            optimizer.step()
            total += loss.item()
            batches += 1
        scheduler.step()
        acc = accuracy(model, x_test, y_test)
        print(
            f"epoch {epoch:3d}  loss {total / batches:.4f}  grad norm {norms / batches:6.3f}  "
            f"test accuracy {acc:.2%}  ({time.perf_counter() - start:.1f}s)"
        )
    return acc


if __name__ == "__main__":
    main()
