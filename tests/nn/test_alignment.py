from __future__ import annotations

import itertools

import torch

from hierspeech2.nn.alignment import generate_path, monotonic_alignment_search
from hierspeech2.nn.functional import length_mask


def test_generate_path_hand_made_example() -> None:
    # row 0: durations (2, 0, 3) -> 5 frames; row 1: (1, 2) plus a padded token -> 3 frames, padded to 5
    durations = torch.tensor([[[2.0, 0.0, 3.0]], [[1.0, 2.0, 0.0]]])
    text_mask = length_mask(torch.tensor([3, 2]), 3)
    frame_mask = length_mask(torch.tensor([5, 3]), 5)
    path = generate_path(durations, text_mask.unsqueeze(2) * frame_mask.unsqueeze(-1))
    expected = torch.tensor(
        [
            [[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]],
            [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]],
        ],
        dtype=torch.float32,
    ).unsqueeze(1)
    assert path.shape == (2, 1, 5, 3)
    assert torch.equal(path, expected)


def test_generate_path_accepts_two_dimensional_durations() -> None:
    durations = torch.tensor([[1.0, 3.0]])
    mask = torch.ones(1, 1, 4, 2)
    assert torch.equal(generate_path(durations, mask), generate_path(durations.unsqueeze(1), mask))


def _brute_force_path(scores: torch.Tensor) -> torch.Tensor:
    """Best monotonic alignment of frames to tokens by enumerating every set of token boundaries."""
    num_frames, num_tokens = scores.shape
    best, best_path = None, None
    for cuts in itertools.combinations(range(1, num_frames), num_tokens - 1):
        bounds = (0, *cuts, num_frames)
        path = torch.zeros_like(scores)
        for token in range(num_tokens):
            path[bounds[token] : bounds[token + 1], token] = 1
        total = (path * scores).sum()
        if best is None or total > best:
            best, best_path = total, path
    return best_path


def test_monotonic_alignment_search_finds_the_best_path() -> None:
    gen = torch.Generator().manual_seed(0)
    frame_lengths, token_lengths = torch.tensor([9, 6, 7]), torch.tensor([4, 3, 1])
    scores = torch.randn(3, 9, 4, generator=gen)
    mask = length_mask(frame_lengths, 9).transpose(1, 2) * length_mask(token_lengths, 4)
    path = monotonic_alignment_search(scores, mask)
    for row in range(3):
        frames, tokens = int(frame_lengths[row]), int(token_lengths[row])
        expected = torch.zeros(9, 4)
        expected[:frames, :tokens] = _brute_force_path(scores[row, :frames, :tokens])
        assert torch.equal(path[row], expected), row


def test_monotonic_alignment_search_path_is_valid_on_long_inputs() -> None:
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(2, 60, 17, generator=gen)
    frame_lengths, token_lengths = torch.tensor([60, 41]), torch.tensor([17, 12])
    mask = length_mask(frame_lengths, 60).transpose(1, 2) * length_mask(token_lengths, 17)
    path = monotonic_alignment_search(scores, mask)
    for row in range(2):
        valid = path[row, : frame_lengths[row], : token_lengths[row]]
        assert torch.equal(valid.sum(1), torch.ones(int(frame_lengths[row])))  # one token per frame
        assert bool((valid.sum(0) >= 1).all())  # every token gets a frame
        token_of_frame = valid.argmax(1)
        steps = token_of_frame[1:] - token_of_frame[:-1]
        assert bool(((steps == 0) | (steps == 1)).all())  # monotonic, no skips
        assert path[row].sum() == frame_lengths[row]  # nothing on padding
