"""TextToVec training: the official ``train_ttv_v1.py`` objective as a LightningModule.

Loss (names as logged, weights from ``ttv_v1/config.json``):

- ``semantic``: L1 between decoded and ground-truth MMS features × ``c_mel`` 10;
- ``kl``: VITS KL between the flowed posterior and the aligned text prior × ``c_kl`` 0.1;
- ``f0``: L1 of log(F0 + 1) on a 60-frame (240 F0 frames) window × ``c_f0`` 1;
- ``duration``: stochastic duration predictor's NLL per token of the MAS durations (× 1);
- ``ctc``: CTC between the phoneme classifier on the posterior and the phoneme ids (× 1).

The official trainer averages the semantic and F0 L1 over padded positions too; here
every loss is masked (``masked_losses=False`` reproduces the official averages).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..constants import F0_FRAMES_PER_HOP, HOP_LENGTH, MODEL_SAMPLE_RATE, PITCH_FLOOR_HZ
from ..data.batch import TTVBatch
from ..errors import CheckpointError, SettingError
from ..models.ttv import TextToVec, TextToVecTrainingOutput
from ..nn.functional import length_mask, slice_segments
from ..nn.losses import GaussianKLLoss, MaskedL1Loss
from .base import (
    TTV_OPTIMIZER,
    OptimizerConfig,
    TrainingTask,
    gradient_norm,
    loss_weights,
    trainable,
)

logger = logging.getLogger(__name__)

CTC_BLANK = 0  # the pad symbol "_", which is also the interspersed blank of the token sequences


class TTVTask(TrainingTask):
    """LightningModule training :class:`~hierspeech2.models.TextToVec` on :class:`TTVBatch` utterances.

    Args:
        model: default the released "ttv_libritts_v1" configuration.
        optimizer: AdamW and its per-epoch decay (official: 2e-4, (0.8, 0.99), 1e-9, AdamW's
            default 0.01, 0.999).
        semantic_weight, kl_weight, f0_weight, duration_weight, ctc_weight: loss weights.
        pitch_window: semantic frames the pitch predictor is trained on per utterance.
        masked_losses: average L1 terms over valid frames only (False: the official averages,
            which include padding).
        validation_asr_model, validation_backbone: with both, validation also speaks each row's
            text (TTV inference, noise 0, the row's own prompt) through this backbone (a registry
            name, official ``.pth`` or native folder; loaded once, kept out of checkpoints) and
            logs ``val/wer``: the WER of this ASR model's transcript of it against its transcript
            of the recording (batches carry phonemes, not text). Off by default: it costs a backbone
            pass and an ASR pass per row (``pocketsphinx`` runs offline; ``whisper`` is the field's).
        training_options: ``init_from``, ``log_examples``, ``max_nonfinite_steps`` of
            :class:`~hierspeech2.tasks.base.TrainingTask` (a step with a NaN/Inf loss is skipped), by
            name; recipes and the CLI list them with this task's.
    """

    def __init__(
        self,
        model: TextToVec | None = None,
        optimizer: OptimizerConfig = TTV_OPTIMIZER,
        semantic_weight: float = 10.0,
        kl_weight: float = 0.1,
        f0_weight: float = 1.0,
        duration_weight: float = 1.0,
        ctc_weight: float = 1.0,
        pitch_window: int = 60,
        masked_losses: bool = True,
        validation_asr_model: str | None = None,
        validation_backbone: str | None = None,
        **training_options: Any,
    ) -> None:
        if (validation_asr_model is None) != (validation_backbone is None):
            raise ValueError("validation_asr_model and validation_backbone go together: give both or neither")
        weights = loss_weights(locals())
        if pitch_window < 1:
            raise ValueError(f"pitch_window must be at least 1 frame, got {pitch_window}")
        super().__init__(model if model is not None else TextToVec(), optimizer=optimizer, **training_options)
        self.save_task_hyperparameters(("model",))
        self.weights = weights
        self.pitch_window = pitch_window
        self.validation_asr_model = validation_asr_model
        self.validation_backbone = validation_backbone
        self._vocoder: list[nn.Module] = []  # a list, so that the backbone is no submodule (no checkpoint)
        self.l1 = MaskedL1Loss(masked=masked_losses)
        self.kl = GaussianKLLoss()

    def initial_weights(self, source: nn.Module) -> dict[str, Tensor]:
        """``source``'s weights, its symbol rows grown when this model's table extends its table."""
        try:
            state = self.model.grown_state_dict(source)
        except SettingError as error:
            raise CheckpointError(f"cannot start from {self.init_from!r}: {error}") from error
        added = len(self.model.symbol_table) - len(source.symbol_table)
        if added:
            logger.info(
                "grew the symbol embedding from %d to %d rows for: %s",
                len(source.symbol_table),
                len(self.model.symbol_table),
                " ".join(self.model.symbol_table[-added:]),
            )
        return state

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.check_symbol_table(getattr(self.trainer.datamodule, "symbol_table", None))

    def check_symbol_table(self, table: tuple[str, ...] | None) -> None:
        """Refuse to train on tokens of another symbol table than the model's (None: not known)."""
        if table is None or table == self.model.symbol_table:
            return
        data_dir = getattr(getattr(self._trainer, "datamodule", None), "data_dir", "the cache")
        raise SettingError(
            f"{data_dir} holds tokens of a {len(table)}-symbol table ({data_dir}/symbols.json), but the "
            f"model reads a {len(self.model.symbol_table)}-symbol table; give the model that table: "
            f"--model.init_args.model.init_args.symbols {data_dir}/symbols.json"
        )

    def configure_optimizers(self):
        optimizer, scheduler = self.optimizer_config.build(trainable(self.model))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def forward(self, batch: TTVBatch) -> TextToVecTrainingOutput:
        return self.model(
            batch.semantic,
            batch.semantic_lengths,
            batch.tokens,
            batch.token_lengths,
            batch.mel,
            pitch_window=self.pitch_window,
        )

    def f0_window(self, batch: TTVBatch, starts: Tensor) -> tuple[Tensor, Tensor]:
        """Ground-truth log F0 [B, 1, 4 S] on each row's pitch window and its validity mask [B, 1, 4 S]."""
        size = self.pitch_window * F0_FRAMES_PER_HOP
        log_f0 = batch.log_f0
        log_f0 = F.pad(log_f0, (0, max(size - log_f0.shape[-1], 0)))
        f0_starts = starts * F0_FRAMES_PER_HOP
        target = slice_segments(log_f0, f0_starts, size)
        valid = (batch.semantic_lengths * F0_FRAMES_PER_HOP - f0_starts).clamp(0, size)
        return target, length_mask(valid, size, dtype=target.dtype)

    def losses(self, batch: TTVBatch, out: TextToVecTrainingOutput) -> dict[str, Tensor]:
        """Unweighted loss terms by name."""
        f0_target, f0_mask = self.f0_window(batch, out.pitch_window_starts)
        log_probs = out.phoneme_logits.float().log_softmax(dim=1).permute(2, 0, 1)  # [T, B, V] for CTC
        return {
            "semantic": self.l1(out.semantic_pred, batch.semantic, out.frame_mask),
            "kl": self.kl(
                out.posterior_in_prior_space,
                out.posterior_log_std,
                out.prior_mean,
                out.prior_log_std,
                out.frame_mask,
            ),
            "f0": self.l1(out.log_f0_pred, f0_target, f0_mask),
            "duration": out.duration_nll.float().sum() / out.text_mask.sum(),
            "ctc": F.ctc_loss(
                log_probs,
                batch.phonemes,
                batch.semantic_lengths,
                batch.phoneme_lengths,
                blank=CTC_BLANK,
                zero_infinity=True,
            ),
        }

    def training_step(self, batch: TTVBatch, batch_idx: int) -> Tensor | None:
        terms = self.losses(batch, self(batch))
        weighted = {name: self.weights[name] * value for name, value in terms.items()}
        loss = torch.stack(list(weighted.values())).sum()
        batch_size = batch.batch_size
        if self.skip_nonfinite(loss=loss):
            # None: Lightning skips backward and the optimizer step
            self.log("train/skipped_nonfinite", float(self.skipped_nonfinite_steps), batch_size=batch_size)
            return None
        self.log_dict(
            {f"train/{name}": value.detach() for name, value in weighted.items()}, batch_size=batch_size
        )
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=batch_size)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=batch_size)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        self.log("train/grad_norm", gradient_norm(self.model.parameters()))

    def validation_step(self, batch: TTVBatch, batch_idx: int) -> None:
        out = self(batch)
        terms = self.losses(batch, out)
        weighted = {name: self.weights[name] * value for name, value in terms.items()}
        self.log_dict(
            {f"val/{name}": value for name, value in weighted.items()},
            batch_size=batch.batch_size,
            sync_dist=True,
        )
        self.log(
            "val/loss",
            torch.stack(list(weighted.values())).sum(),
            batch_size=batch.batch_size,
            sync_dist=True,
        )
        if self.validation_asr_model:
            self.log("val/wer", self._word_error_rate(batch), batch_size=batch.batch_size, sync_dist=True)
        if batch_idx == 0 and self.trainer.is_global_zero:
            self._log_examples(batch, out)

    def _spoken(self, batch: TTVBatch, index: int) -> Tensor:
        """Row ``index``'s text spoken by TTV (noise 0) and the validation backbone, 16 kHz ``[N]``."""
        if not self._vocoder:
            from ..registry import load_model

            self._vocoder.append(load_model(self.validation_backbone, device=self.device).eval())
        frames = int(batch.semantic_lengths[index])
        tokens = batch.tokens[index : index + 1, : int(batch.token_lengths[index])]
        prompt, prompt_lengths = (
            batch.mel[index : index + 1, :, :frames],
            batch.semantic_lengths[index : index + 1],
        )
        semantic, log_f0 = self.model.infer(
            tokens,
            batch.token_lengths[index : index + 1],
            prompt,
            prompt_lengths,
            noise_scale=0.0,
            noise_scale_w=0.0,
        )
        log_f0 = log_f0.masked_fill(log_f0 < math.log(PITCH_FLOOR_HZ), 0.0)
        lengths = torch.tensor([semantic.shape[-1]], device=semantic.device)
        wav = self._vocoder[0].voice_conversion(
            semantic, lengths, prompt, prompt_lengths, log_f0, noise_scale=0.0
        )
        return wav.reshape(-1).float().cpu()

    def _word_error_rate(self, batch: TTVBatch) -> Tensor:
        from ..evaluation import transcribe, word_error_rate

        spoken = [self._spoken(batch, index) for index in range(batch.batch_size)]
        recordings = [
            batch.audio[index, 0, : int(batch.semantic_lengths[index]) * HOP_LENGTH].float().cpu()
            for index in range(batch.batch_size)
        ]
        heard = transcribe(
            spoken + recordings, MODEL_SAMPLE_RATE, self.validation_asr_model, device=self.device
        )
        pairs = [(h, r) for h, r in zip(heard[: len(spoken)], heard[len(spoken) :]) if r.strip()]
        if not pairs:  # the ASR heard no word in any recording: nothing to score against
            return torch.tensor(float("nan"), device=self.device)
        rate = word_error_rate([h for h, _ in pairs], [r for _, r in pairs])
        return torch.tensor(rate, device=self.device)

    def _log_examples(self, batch: TTVBatch, out: TextToVecTrainingOutput) -> None:
        """Ground-truth / reconstructed / synthesised semantic features as images; the source audio."""
        for index in range(min(self.log_examples, batch.batch_size)):
            frames = int(batch.semantic_lengths[index])
            tokens = batch.tokens[index : index + 1, : int(batch.token_lengths[index])]
            semantic, log_f0 = self.model.infer(
                tokens,
                batch.token_lengths[index : index + 1],
                batch.mel[index : index + 1, :, :frames],
                batch.semantic_lengths[index : index + 1],
            )
            self.log_image(f"val/{index}/semantic_target", batch.semantic[index, :, :frames])
            self.log_image(f"val/{index}/semantic_reconstructed", out.semantic_pred[index, :, :frames])
            self.log_image(f"val/{index}/semantic_synthesised", semantic[0])
            self.log_image(f"val/{index}/log_f0_synthesised", log_f0[0])
            self.log_image(f"val/{index}/mel_prompt", batch.mel[index, :, :frames])
            if self.current_epoch == 0:
                audio = batch.audio[index, 0, : frames * HOP_LENGTH]
                self.log_audio(f"val/{index}/audio", audio, MODEL_SAMPLE_RATE)
