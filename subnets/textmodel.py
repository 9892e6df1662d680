"""A small byte-level next-byte model for the text subnet: embeddings of the last `order` bytes
feeding a two-layer MLP. It trains in seconds on one CPU core, so tests use a real model, and runs
unchanged on a GPU; miners are free to serve anything better.
"""

from __future__ import annotations

import torch
from torch import nn

PAD = 0  # left padding for contexts shorter than the model's order (NUL is rare in source text)


class ByteMLP(nn.Module):
    """p(next byte | last `order` bytes)."""

    def __init__(self, order: int = 16, embed: int = 24, hidden: int = 256) -> None:
        super().__init__()
        self.order = order
        self.embed = nn.Embedding(256, embed)
        self.body = nn.Sequential(
            nn.Linear(order * embed, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 256),
        )

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, 256) for a (batch, order) tensor of byte values."""
        return self.body(self.embed(ctx).flatten(1))


def contexts_tensor(contexts: list[bytes] | tuple[bytes, ...], order: int, device: torch.device) -> torch.Tensor:
    """The last `order` bytes of each context, left-padded with PAD, as a (batch, order) long tensor."""
    rows = bytearray()
    for ctx in contexts:
        tail = ctx[-order:]
        rows += bytes([PAD]) * (order - len(tail)) + tail
    flat = torch.frombuffer(bytearray(rows), dtype=torch.uint8) if rows else torch.empty(0, dtype=torch.uint8)
    return flat.reshape(len(contexts), order).to(device=device, dtype=torch.long)


def sample_batch(data: torch.Tensor, order: int, batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` random (context, next byte) pairs from a uint8 tensor of training text."""
    starts = torch.randint(0, data.numel() - order - 1, (batch,), generator=gen)
    idx = starts[:, None] + torch.arange(order + 1)
    windows = data[idx].long()
    return windows[:, :order], windows[:, order]


def train(
    model: ByteMLP,
    data: torch.Tensor,
    steps: int,
    batch: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | None = None,
) -> float:
    """Adam on cross-entropy for `steps` steps; returns the mean loss (nats) of the last tenth."""
    device = device or next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    model.train()
    tail: list[float] = []
    for step in range(steps):
        x, y = sample_batch(data, model.order, batch, gen)
        loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step >= steps - max(1, steps // 10):
            tail.append(loss.item())
    model.eval()
    return sum(tail) / len(tail) if tail else float("nan")


@torch.no_grad()
def next_byte_probs(model: ByteMLP, contexts: list[bytes] | tuple[bytes, ...]) -> torch.Tensor:
    """(batch, 256) float32 probabilities on the CPU."""
    device = next(model.parameters()).device
    logits = model(contexts_tensor(contexts, model.order, device))
    return torch.softmax(logits.float(), dim=-1).cpu()
