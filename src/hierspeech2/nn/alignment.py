"""Hard monotonic alignments between text tokens and frames.

``generate_path`` expands integer durations into an alignment matrix (inference);
``monotonic_alignment_search`` finds the most likely monotonic alignment (training,
Glow-TTS/VITS), written as a dynamic programme vectorised over the batch and the text
axis, so it runs on any device without a compiled extension.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_NEG_INF = (
    -1e9
)  # the official Cython search's "impossible" score; only ever compared, never summed into results


def generate_path(durations: Tensor, mask: Tensor) -> Tensor:
    """Expand durations [B, 1, T_text] into a 0/1 alignment path [B, 1, T_frames, T_text] under ``mask``.

    Token ``i`` covers frames ``[sum(d[:i]), sum(d[:i+1]))``; ``mask`` ([B, 1, T_frames, T_text],
    text mask × frame mask) fixes the number of frames and zeroes padding. Durations are
    expected to be whole numbers (e.g. after ``torch.ceil``).
    """
    if durations.dim() == 2:
        durations = durations.unsqueeze(1)
    num_frames = mask.shape[-2]
    end = torch.cumsum(durations, dim=-1)  # [B, 1, T_text]
    start = F.pad(end, (1, 0))[..., :-1]
    frames = torch.arange(num_frames, device=durations.device, dtype=durations.dtype).view(1, 1, -1, 1)
    path = (frames < end.unsqueeze(-2)) & (frames >= start.unsqueeze(-2))
    return path.to(mask.dtype) * mask


@torch.no_grad()
def monotonic_alignment_search(log_likelihood: Tensor, mask: Tensor) -> Tensor:
    """Most likely monotonic, surjective alignment:
    log_likelihood and mask [B, T_frames, T_text] → path (0/1).

    Every frame is assigned to exactly one token, tokens are visited in order and each
    token gets at least one frame (Glow-TTS). ``mask`` is text mask × frame mask; the
    result is zero on padding and has the dtype of ``log_likelihood``.
    """
    batch, num_frames, num_tokens = log_likelihood.shape
    frame_lengths = mask[:, :, 0].sum(1).long()
    token_lengths = mask[:, 0, :].sum(1).long()
    scores = log_likelihood.float()
    positions = torch.arange(num_tokens, device=scores.device)
    impossible = scores.new_full((batch, 1), _NEG_INF)

    # Forward pass: best score of any path ending in (frame, token), row by row.
    cumulative = torch.empty_like(scores)
    previous = scores.new_full((batch, num_tokens), _NEG_INF)
    for frame in range(num_frames):
        stay = previous.masked_fill(
            positions == frame, _NEG_INF
        )  # token `frame` cannot have been reached already
        advance = torch.cat([impossible, previous[:, :-1]], dim=1)
        if frame == 0:
            advance[:, 0] = 0.0
        previous = scores[:, frame] + torch.maximum(advance, stay)
        cumulative[:, frame] = previous

    # Backtrack from the last token at each row's last frame.
    path = torch.zeros_like(scores)
    index = token_lengths - 1
    rows = torch.arange(batch, device=scores.device)
    for frame in range(num_frames - 1, -1, -1):
        active = frame < frame_lengths
        path[rows, frame, index.clamp_min(0)] = active.to(path.dtype)
        if frame == 0:
            break
        above = cumulative[rows, frame - 1, index.clamp_min(0)]
        above_left = cumulative[rows, frame - 1, (index - 1).clamp_min(0)]
        step = (index > 0) & ((index == frame) | (above < above_left))
        index = torch.where(active & step, index - 1, index)
    return path.to(log_likelihood.dtype) * mask.to(log_likelihood.dtype)
