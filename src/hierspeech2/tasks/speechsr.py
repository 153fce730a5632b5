"""SpeechSR training: 16 kHz → 24/48 kHz generator against MPD + multi-resolution STFT discriminators.

The authors released SpeechSR's weights and configs but no trainer; the objective here is
the one their configs and the HierSpeech++ paper describe: log-mel L1 at the target rate
(× ``c_mel`` 45), least-squares GAN and feature matching, AdamW 1e-4, betas (0.8, 0.99),
per-epoch decay 0.999 (24k) / 0.995 (48k), segments of 9 600 target-rate samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..audio import LogMelSpectrogram
from ..data.batch import SpeechSRBatch
from ..models.speechsr import SpeechSR
from ..nn.discriminators import RESOLUTIONS, RESOLUTIONS_48K, MultiDiscriminator
from ..nn.functional import length_mask
from ..nn.losses import MelL1Loss
from .base import SPEECHSR48K_OPTIMIZER, GANTask, OptimizerConfig, check_loss_weights

# The mel settings of the official SpeechSR configs, by output rate.
MEL_SETTINGS = {
    24000: {
        "sample_rate": 24000,
        "n_fft": 960,
        "win_length": 960,
        "hop_length": 240,
        "n_mels": 100,
        "f_max": 12000.0,
    },
    48000: {
        "sample_rate": 48000,
        "n_fft": 1280,
        "win_length": 1280,
        "hop_length": 320,
        "n_mels": 128,
        "f_max": 24000.0,
    },
}


def default_mel(output_rate: int) -> LogMelSpectrogram:
    """The official mel front end for a SpeechSR output rate (24 or 48 kHz)."""
    if output_rate not in MEL_SETTINGS:
        raise ValueError(
            f"no default mel settings for a {output_rate} Hz SpeechSR; pass mel=LogMelSpectrogram(...) "
            f"(known rates: {sorted(MEL_SETTINGS)})"
        )
    return LogMelSpectrogram(**MEL_SETTINGS[output_rate])


def default_discriminator(output_rate: int) -> MultiDiscriminator:
    """MPD + 5 STFT discriminators (24 kHz) or 6 (48 kHz, adds 4096/1024/4096), as the official."""
    return MultiDiscriminator(resolutions=RESOLUTIONS_48K if output_rate >= 48000 else RESOLUTIONS)


LSD_MIN_SAMPLES = 2048
"""Rows shorter than one LSD frame (its n_fft) are left out of ``val/lsd``."""


class SpeechSRTask(GANTask):
    """LightningModule training :class:`~hierspeech2.models.SpeechSR` on :class:`SpeechSRBatch` segments.

    Args:
        model: the generator; default the released 48 kHz configuration.
        discriminator: default per output rate (see :func:`default_discriminator`).
        mel: log-mel extractor at the output rate for the L1 loss; default per rate
            (see :data:`MEL_SETTINGS`).
        optimizer: AdamW and its per-epoch decay; default the 48 kHz config's (decay 0.995; 24 kHz: 0.999).
        mel_weight: ``c_mel`` of the official configs.
        gan_options: the other arguments of :class:`~hierspeech2.tasks.base.GANTask` (GAN weights,
            ``grad_clip``, ``init_from``, ``discriminator_init_from``, ``log_examples``,
            ``max_nonfinite_steps``), by name; recipes and the CLI list them with this task's.
    """

    def __init__(
        self,
        model: SpeechSR | None = None,
        discriminator: MultiDiscriminator | None = None,
        mel: LogMelSpectrogram | None = None,
        optimizer: OptimizerConfig = SPEECHSR48K_OPTIMIZER,
        mel_weight: float = 45.0,
        **gan_options: Any,
    ) -> None:
        check_loss_weights(mel_weight=mel_weight)
        model = model if model is not None else SpeechSR()
        super().__init__(
            model,
            discriminator if discriminator is not None else default_discriminator(model.output_rate),
            optimizer=optimizer,
            **gan_options,
        )
        self.save_task_hyperparameters(("model", "discriminator", "mel"))
        self.mel_weight = mel_weight
        self.mel_loss = MelL1Loss(mel if mel is not None else default_mel(model.output_rate))

    def generate(self, batch: SpeechSRBatch) -> tuple[Tensor, Tensor, dict[str, Any]]:
        fake = self.model(batch.low_rate)
        length = min(fake.shape[-1], batch.high_rate.shape[-1])
        return fake[..., :length], batch.high_rate[..., :length], {}

    def _frame_mask(self, batch: SpeechSRBatch, num_samples: int) -> Tensor:
        hop = self.mel_loss.mel.hop_length
        return length_mask(batch.high_rate_lengths.clamp_max(num_samples) // hop, num_samples // hop)

    def reconstruction_terms(
        self, batch: SpeechSRBatch, fake: Tensor, real: Tensor, extra: dict[str, Any]
    ) -> dict[str, Tensor]:
        mask = self._frame_mask(batch, real.shape[-1])
        return {"mel": self.mel_weight * self.mel_loss(fake, real, mask)}

    def _spectral_distances(self, batch: SpeechSRBatch, fake: Tensor, real: Tensor) -> dict[str, Tensor]:
        """Mean log-spectral distance of the rows, full band and above 8 kHz (what SR papers report)."""
        from ..evaluation import log_spectral_distance

        rate = self.model.output_rate
        lengths = batch.high_rate_lengths.clamp_max(real.shape[-1]).tolist()
        distances = [
            log_spectral_distance(fake[index, 0, :length].float(), real[index, 0, :length].float(), rate)
            for index, length in enumerate(lengths)
            if length >= LSD_MIN_SAMPLES
        ]
        if not distances:
            return {}
        return {
            "val/lsd": torch.tensor([d.full for d in distances]).mean().to(fake.device),
            "val/lsd_high": torch.tensor([d.high for d in distances]).mean().to(fake.device),
        }

    def validation_step(self, batch: SpeechSRBatch, batch_idx: int) -> None:
        fake, real, _ = self.generate(batch)
        mel_l1 = self.mel_loss(fake, real, self._frame_mask(batch, real.shape[-1]))
        self.log("val/mel_l1", mel_l1, batch_size=real.shape[0], sync_dist=True)
        self.log_dict(self._spectral_distances(batch, fake, real), batch_size=real.shape[0], sync_dist=True)
        if batch_idx == 0 and self.trainer.is_global_zero:
            rate = self.model.output_rate
            for index in range(min(self.log_examples, real.shape[0])):
                length = int(batch.high_rate_lengths[index].clamp_max(real.shape[-1]))
                self.log_audio(f"val/{index}/generated", fake[index, 0, :length], rate)
                if self.current_epoch == 0:
                    self.log_audio(f"val/{index}/target", real[index, 0, :length], rate)
                with torch.autocast(device_type=fake.device.type, enabled=False):
                    mels = self.mel_loss.mel(
                        torch.stack([fake[index, 0, :length], real[index, 0, :length]]).float()
                    )
                self.log_image(f"val/{index}/mel_generated", mels[0])
                self.log_image(f"val/{index}/mel_target", mels[1])
