"""Re-record ``denoiser_official_case.safetensors`` and ``mpsenet_manifest.json`` with the official MP-SENet.

Not a test: run by hand with the official HierSpeech++ repository's ``denoiser`` package importable
(e.g. ``PYTHONPATH=/path/to/HierSpeechpp python tests/models/record_denoiser_case.py``); ``pesq`` and
``joblib``, imported by the official module for training metrics only, may be stubbed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


class _Config(dict):
    __getattr__ = dict.__getitem__


def main() -> None:
    from denoiser.generator import MPNet  # the official code
    from denoiser.infer import denoise, mag_pha_stft
    from safetensors.torch import save_file

    sys.path.insert(0, str(HERE))
    from test_denoiser import TINY_DENOISER, deterministic_official_state

    released = _Config(dense_channel=64, n_fft=400, beta=2.0)
    manifest = {k: list(v.shape) for k, v in MPNet(released).state_dict().items()}
    lines = [f"  {json.dumps(key)}: {json.dumps(shape)}" for key, shape in manifest.items()]
    (HERE / "mpsenet_manifest.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")

    tiny = _Config(
        dense_channel=TINY_DENOISER["dense_channel"],
        n_fft=TINY_DENOISER["n_fft"],
        beta=2.0,
        hop_size=TINY_DENOISER["hop_length"],
        win_size=TINY_DENOISER["win_length"],
        compress_factor=0.3,
    )
    official = MPNet(tiny, num_tscblocks=TINY_DENOISER["num_tsconformers"]).eval()
    official.load_state_dict(
        deterministic_official_state({k: tuple(v.shape) for k, v in official.state_dict().items()})
    )
    t = torch.arange(3200) / 16000
    noisy = 0.3 * torch.sin(2 * torch.pi * 180 * t) * (1 + torch.sin(2 * torch.pi * 3 * t))
    noisy = noisy + 0.05 * torch.sin(t * 7919.0) * torch.cos(t * 104729.0)  # deterministic "noise"
    with torch.no_grad():
        denoised = denoise(noisy, official, tiny)[0]
        # the network alone, on this machine's spectrum: its phase input is machine-dependent where
        # the STFT's imaginary part is exactly zero (±0 gives ±π), so the test also checks this
        norm = torch.sqrt(len(noisy) / torch.sum(noisy**2.0))
        amp, phase, _ = mag_pha_stft(
            (noisy * norm)[None], tiny.n_fft, tiny.hop_size, tiny.win_size, tiny.compress_factor
        )
        amp_out, phase_out, _ = official(amp, phase)
    tensors = {
        "noisy": noisy, "denoised": denoised, "noisy_magnitude": amp[0], "noisy_phase": phase[0],
        "magnitude": amp_out[0], "phase": phase_out[0],
    }  # fmt: skip
    save_file({k: v.contiguous() for k, v in tensors.items()}, HERE / "denoiser_official_case.safetensors")


if __name__ == "__main__":
    main()
