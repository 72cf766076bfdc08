"""Streaming ConvBiLSTM with a trailing delay of D maps.

Maps arrive one at a time. The forward direction's state is carried map by map. When map t
exists, the backward direction runs from a zero state over the buffered maps t, t-1, ..., t-D
and the head decodes map t-D from its forward features and these backward features. So the
output for map t-D uses all the past and D maps of future; D = 0 is causal, and D covering the
whole recording equals the offline reconstruction. :func:`reconstruct_with_lookahead` is the
same computation done offline, which the tests compare against.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from dblink_live.recon.model import ConvBiLSTM, State

__all__ = ["StreamingReconstructor", "reconstruct_with_lookahead"]


class StreamingReconstructor:
    """Push normalized maps (Y, X); get (index, reconstruction, confidence) D maps later.

    Parameters
    ----------
    model
        The network (eval mode; its device is used).
    delay_maps
        Trailing delay D (maps of look-ahead).
    """

    def __init__(self, model: ConvBiLSTM, delay_maps: int):
        if delay_maps < 0:
            raise ValueError("delay_maps must be >= 0")
        self.model = model
        self.delay = int(delay_maps)
        self._device = next(model.parameters()).device
        self._state: State | None = None
        self._maps: deque[torch.Tensor] = deque(maxlen=self.delay + 1)
        self._fw: deque[torch.Tensor] = deque(maxlen=self.delay + 1)
        self._next_in = 0
        self._next_out = 0

    @torch.no_grad()
    def push(
        self, counts_map: np.ndarray | torch.Tensor
    ) -> tuple[int, np.ndarray, np.ndarray | None] | None:
        """Add map t; returns the output for map t - D once it exists (else None)."""
        x = torch.as_tensor(counts_map, dtype=torch.float32, device=self._device)[None, None, None]
        fw, self._state = self.model.run_direction(x, "forward", self._state)
        self._maps.append(x[0, 0])
        self._fw.append(fw[0, 0])
        self._next_in += 1
        if self._next_in - self._next_out <= self.delay:
            return None
        return self._emit(len(self._maps))

    def _emit(self, lookahead_plus_one: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        maps = list(self._maps)[-lookahead_plus_one:]
        # backward from the newest buffered map down to the one being output, zero state
        seq = torch.stack(maps[::-1])[None]  # (1, n, 1, Y, X), newest first
        bw, _ = self.model.run_direction(seq, "backward")
        target_fw = list(self._fw)[-lookahead_plus_one]
        logit, conf = self.model.decode(target_fw[None, None], bw[:, -1:])
        idx = self._next_out
        self._next_out += 1
        rec = torch.sigmoid(logit[0, 0]).cpu().numpy()
        cf = torch.sigmoid(conf[0, 0]).cpu().numpy() if conf is not None else None
        return idx, rec, cf

    @torch.no_grad()
    def flush(self) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        """Outputs for the last maps (their look-ahead shrinks at the end of the recording)."""
        out = []
        while self._next_out < self._next_in:
            remaining = self._next_in - self._next_out
            out.append(self._emit(remaining))
        return out


@torch.no_grad()
def reconstruct_with_lookahead(
    model: ConvBiLSTM, maps: np.ndarray, delay_maps: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Offline equivalent of streaming with delay D: (T, Y, X) maps -> outputs (T, Y, X) x 2.

    Output t = head(forward features of maps 0..t, backward features of maps min(t+D, T-1)..t
    run from a zero state).
    """
    dev = next(model.parameters()).device
    x = torch.as_tensor(maps, dtype=torch.float32, device=dev)[None, :, None]
    fw, _ = model.run_direction(x, "forward")
    t_len = x.shape[1]
    recs, confs = [], []
    for t in range(t_len):
        end = min(t + delay_maps, t_len - 1)
        seg = x[:, t : end + 1].flip(1)
        bw, _ = model.run_direction(seg, "backward")
        logit, conf = model.decode(fw[:, t : t + 1], bw[:, -1:])
        recs.append(torch.sigmoid(logit[0, 0]).cpu().numpy())
        if conf is not None:
            confs.append(torch.sigmoid(conf[0, 0]).cpu().numpy())
    return np.stack(recs), (np.stack(confs) if confs else None)
