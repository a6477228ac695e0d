"""An LLM-shaped decoder for the benchmarks, built from a config: no downloads, no transformers.

Llama-style blocks (RMSNorm, causal multi-head self-attention with rotary position
embeddings, SwiGLU MLP, pre-norm residuals), written out with plain tensor ops so that both
tracers record the same program: the default config is 16 layers, hidden 512, 8 heads,
sequence 128, batch 1 (issue 14's scale case). Weights are seeded; the model is in eval mode.

    from decoder import DecoderConfig, build, example
    model = build(DecoderConfig(layers=16)); model(*example(DecoderConfig()))
"""
from __future__ import annotations

import dataclasses
import math
from typing import Tuple

import torch
import torch.nn as nn

__all__ = ["DecoderConfig", "Decoder", "build", "example"]


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    layers: int = 16
    hidden: int = 512
    heads: int = 8
    intermediate: int = 1376  # ~ 8/3 x hidden, as Llama's SwiGLU
    vocab: int = 1000
    seq: int = 128
    batch: int = 1
    eps: float = 1e-6


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = c.heads, c.hidden // c.heads
        self.q = nn.Linear(c.hidden, c.hidden, bias=False)
        self.k = nn.Linear(c.hidden, c.hidden, bias=False)
        self.v = nn.Linear(c.hidden, c.hidden, bias=False)
        self.o = nn.Linear(c.hidden, c.hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim) + mask
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.o(out.transpose(1, 2).reshape(b, s, -1))


class MLP(nn.Module):
    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.up = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.down = nn.Linear(c.intermediate, c.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.norm1, self.attn = RMSNorm(c.hidden, c.eps), Attention(c)
        self.norm2, self.mlp = RMSNorm(c.hidden, c.eps), MLP(c)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin, mask)
        return x + self.mlp(self.norm2(x))


class Decoder(nn.Module):
    """Token ids ``(batch, seq)`` -> logits ``(batch, seq, vocab)``."""

    def __init__(self, c: DecoderConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(c.vocab, c.hidden)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden, c.eps)
        self.head = nn.Linear(c.hidden, c.vocab, bias=False)
        head_dim = c.hidden // c.heads
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = ids.shape[1]
        pos = torch.arange(s, device=ids.device).float()
        freqs = torch.outer(pos, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((s, s), float("-inf"), device=ids.device).triu(1)
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.head(self.norm(x))


def build(c: DecoderConfig = DecoderConfig()) -> Decoder:
    torch.manual_seed(0)
    return Decoder(c).eval()


def example(c: DecoderConfig = DecoderConfig(), batch: int = 0) -> Tuple[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, c.vocab, (batch or c.batch, c.seq), generator=g),)
