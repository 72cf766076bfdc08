"""ConvBiLSTM: ConvLSTM cells run forwards and backwards over a sequence of maps, and a
convolutional head per time step.

Shapes: maps are (B, T, 1, Y, X) normalized counts; hidden states (B, H, Y, X); the output is two
(B, T, Y, X) logits: the reconstruction (structure, sigmoid -> [0, 1]) and, with
``confidence=True``, the confidence (sigmoid -> probability that the thresholded reconstruction
is right at that pixel). Fully convolutional: trained on tiles, runs on any field of view.

The two directions are kept apart (:meth:`ConvBiLSTM.run_direction`) so that offline inference
can run them in separate passes over a long recording (memory bounded), and the streaming
reconstruction can carry the forward state while re-running the backward pass over a short
look-ahead.
"""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import nn

__all__ = ["ConvBiLSTM", "ConvLSTMCell", "State"]

#: Per layer (h, c), each (B, H, Y, X).
State = list[tuple[torch.Tensor, torch.Tensor]]


class ConvLSTMCell(nn.Module):
    """One ConvLSTM cell: a single convolution over [input, hidden] gives the i, f, o, g gates."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(
            in_channels + hidden_channels,
            4 * hidden_channels,
            kernel_size,
            padding=kernel_size // 2,
        )

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = self.conv(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvBiLSTM(nn.Module):
    """Stacked ConvLSTM in both directions + per-time-step convolutional head.

    Parameters mirror :class:`dblink_live.config.ReconModelConfig` (build with
    ``ConvBiLSTM(**cfg.model_dump())``).
    """

    def __init__(
        self,
        preset: str = "light",
        hidden_channels: int = 8,
        layers: int = 2,
        kernel_size: int = 3,
        head_channels: list[int] | tuple[int, ...] = (16, 32, 32),
        head_kernel_size: int = 3,
        confidence: bool = True,
    ):
        super().__init__()
        #: the constructor arguments (rebuild with ``ConvBiLSTM(**model.architecture)``)
        self.architecture = {
            "preset": preset,
            "hidden_channels": hidden_channels,
            "layers": layers,
            "kernel_size": kernel_size,
            "head_channels": list(head_channels),
            "head_kernel_size": head_kernel_size,
            "confidence": confidence,
        }
        self.preset = preset
        self.hidden_channels = hidden_channels
        self.layers = layers

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                ConvLSTMCell(1 if i == 0 else hidden_channels, hidden_channels, kernel_size)
                for i in range(layers)
            )

        self.forward_cells = stack()
        self.backward_cells = stack()
        mods: list[nn.Module] = []
        cin = 2 * hidden_channels
        for cout in head_channels:
            mods += [
                nn.Conv2d(cin, cout, head_kernel_size, padding=head_kernel_size // 2),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.head = nn.Sequential(*mods)
        self.out = nn.Conv2d(
            cin, 2 if confidence else 1, head_kernel_size, padding=head_kernel_size // 2
        )
        self.confidence = confidence
        #: run the head channels-last (faster on the CPU; off only to compare with the layout
        #: used before, in ``scripts/bench_reprocess.py``)
        self.channels_last_head = True

    def zero_state(self, like: torch.Tensor) -> State:
        """Zero (h, c) for every layer, for maps shaped like ``like`` (B, ..., Y, X)."""
        b, y, x = like.shape[0], like.shape[-2], like.shape[-1]
        z = like.new_zeros(b, self.hidden_channels, y, x)
        return [(z, z) for _ in range(self.layers)]

    def run_direction(
        self,
        maps: torch.Tensor,
        direction: Literal["forward", "backward"],
        state: State | None = None,
    ) -> tuple[torch.Tensor, State]:
        """Run one direction over (B, T, 1, Y, X) maps in the order given (a backward pass is
        given the maps already reversed in time). Returns last-layer features (B, T, H, Y, X)
        in the same order and the final state."""
        cells = self.forward_cells if direction == "forward" else self.backward_cells
        state = list(state) if state is not None else self.zero_state(maps)
        outs = []
        for t in range(maps.shape[1]):
            x = maps[:, t]
            for i, cell in enumerate(cells):
                state[i] = cell(x, state[i])
                x = state[i][0]
            outs.append(x)
        return torch.stack(outs, 1), state

    def decode(
        self, forward_features: torch.Tensor, backward_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Head on concatenated features (B, T, H, Y, X) x 2 -> logits (B, T, Y, X) (x2).

        The head runs channels-last (NHWC): its convolutions have few channels, and in that
        layout they run ~1.8x faster on the CPU at 256-512 bins square (same results to float
        rounding; ``scripts/bench_reprocess.py``)."""
        feats = torch.cat([forward_features, backward_features], 2)
        b, t = feats.shape[:2]
        x = feats.flatten(0, 1)
        if self.channels_last_head:
            x = x.contiguous(memory_format=torch.channels_last)
        o = self.out(self.head(x)).contiguous().view(b, t, -1, *feats.shape[-2:])
        return o[:, :, 0], (o[:, :, 1] if self.confidence else None)

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, 1, Y, X) normalized maps -> (reconstruction logits, confidence logits)."""
        fw, _ = self.run_direction(maps, "forward")
        bw, _ = self.run_direction(maps.flip(1), "backward")
        return self.decode(fw, bw.flip(1))

    def macs_per_pixel(self) -> int:
        """Multiply-accumulates per output pixel per time step (both directions + head)."""
        total = 0
        for cells in (self.forward_cells, self.backward_cells):
            for cell in cells:
                w = cast(ConvLSTMCell, cell).conv.weight
                total += w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3]
        for m in [*self.head, self.out]:
            if isinstance(m, nn.Conv2d):
                total += m.weight.numel()
        return total
