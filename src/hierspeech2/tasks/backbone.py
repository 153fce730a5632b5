"""HierSpeech2 backbone training: the objective the authors never released, reconstructed.

Generator loss (names as logged; weights from the "hierspeechpp_eng_kor" config unless marked):

- ``mel``: L1 between log-mels of generated and real audio on the generator window × ``c_mel`` 45;
- ``kl``: VITS KL between posterior_flow(z_a) and the clean semantic prior × ``c_kl`` 1;
- ``kl_perturbed``: VITS KL between perturbed_flow(semantic latent) and the perturbed prior × ``c_kl``
  (the routing is reconstructed: ``perturbed_target``);
- ``kl_reverse``, ``kl_perturbed_reverse``: the bidirectional (NaturalSpeech) terms, a prior sample
  run back through its flow and scored under the Gaussian below × ``c_bi_kl`` 0.5 (reconstructed);
- ``f0``: L1 between the source network's log F0 and log(F0 + 1) on the window × ``c_f0`` 45;
- ``prosody``: L1 between the prosody decoder's output and the first 20 mel bins, over valid
  frames × ``c_mel`` (the authors' answer; the input latent, ``prosody_source``, is reconstructed);
- ``adversarial``, ``feature_matching``: LSGAN and feature matching against MPD + 5 STFT discriminators.

The perturbed prior reads MMS features of perturbed audio (:mod:`hierspeech2.data.perturbation`),
computed here on the fly by a frozen semantic encoder; F0 always comes from the clean audio.
The network pass itself is :func:`hierspeech2.models.backbone_training.training_forward`.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..audio import LogMelSpectrogram
from ..constants import MODEL_SAMPLE_RATE, SEMANTIC_LAYER
from ..data.batch import BackboneBatch
from ..data.perturbation import Perturbation
from ..models.backbone import HierSpeech2
from ..models.backbone_training import (
    LATENT_SOURCES,
    LatentSource,
    TrainingOutput,
    training_forward,
    window_targets,
)
from ..nn.discriminators import MultiDiscriminator
from ..nn.losses import GaussianKLLoss, MaskedL1Loss, MelL1Loss
from .base import HIERSPEECH2_OPTIMIZER, GANTask, OptimizerConfig, loss_weights

logger = logging.getLogger(__name__)

MMS_ENTRY = "mms-300m"  # the registry name of the semantic encoder the released backbones read


def _module_names() -> dict[str, str]:
    """Freezable parts: native top-level names, and the official prefixes mapped to them."""
    names = {native.rstrip("."): native.rstrip(".") for _, native in HierSpeech2.OFFICIAL_PREFIXES}
    names |= {official.rstrip("."): native.rstrip(".") for official, native in HierSpeech2.OFFICIAL_PREFIXES}
    return names


class HierSpeech2Task(GANTask):
    """LightningModule training :class:`~hierspeech2.models.HierSpeech2` on :class:`BackboneBatch` segments.

    Args:
        model: the backbone; default the released 97M "hierspeechpp_eng_kor" configuration.
        discriminator: default MPD (periods 2, 3, 5, 7, 11) + 5 complex-STFT discriminators.
        semantic_encoder: encodes the perturbed audio for the perturbed prior: a registry name
            (default ``mms-300m``), a local transformers Wav2Vec2 folder (read to ``semantic_layer``
            layers) or a module. Frozen, and kept out of checkpoints. None: no perturbed features
            can be made, so the perturbed prior reads the clean ones (with a warning).
        semantic_layer: hidden state a local encoder folder is read to (MMS: 7).
        perturbation: perturb the clean audio on the training device (a whole batch at once)
            when the batch carries no ``perturbed_audio`` (None: the datamodule's ``perturb``
            provides it, or there is none).
        mel_weight, kl_weight, bidirectional_kl_weight, f0_weight, prosody_weight: ``c_mel``,
            ``c_kl``, ``c_bi_kl``, ``c_f0`` of the official config and the prosody term's weight
            (``c_mel``, per the authors). ``bidirectional_kl_weight=0`` skips the reverse passes.
        window_frames: frames of z_a the generator decodes per row (official segment: 192 = 61 440
            samples, i.e. the whole segment); capped by the shortest row of a batch.
        uncond_probability: chance per row that the generator and source network get the null
            style instead of the voice's (classifier-free guidance).
        perturbed_target: which semantic latent ``perturbed_flow`` maps onto the perturbed prior:
            a sample of the clean semantic prior (``semantic_prior``) or posterior_flow(z_a)
            (``flowed_posterior``). Reconstructed.
        prosody_source: the latent the prosody decoder reads, the same two choices. Reconstructed.
        freeze: parts left untrained, by native or official name (e.g. ``perturbed_prior_encoder``
            or ``enc_p_l``), for low-data speaker adaptation.
        validation_f0_rmse: also log the F0 RMSE (Hz, on frames voiced in both) of the
            resynthesised validation audio, by YAAPT; off by default (YAAPT runs on the CPU).
        validation_speaker_model: also log the speaker similarity of the resynthesis to its own
            recording (``val/resynthesis_similarity``) and of each conversion to the voice it was
            given (``val/conversion_similarity``, every row in the voice of the next), by this
            encoder of :func:`hierspeech2.evaluation.speaker_similarity` (``resemblyzer`` works
            offline; ``wavlm``); off by default (it needs the ``eval`` extra).
        gan_options: the other arguments of :class:`~hierspeech2.tasks.base.GANTask` (GAN weights,
            ``grad_clip``, ``init_from`` to fine-tune released weights such as ``hierspeech2-v1.1``,
            ``discriminator_init_from``, ``log_examples``, ``max_nonfinite_steps``), by name; recipes
            and the CLI list them with this task's.
    """

    def __init__(
        self,
        model: HierSpeech2 | None = None,
        discriminator: MultiDiscriminator | None = None,
        semantic_encoder: str | nn.Module | None = MMS_ENTRY,
        semantic_layer: int = SEMANTIC_LAYER,
        perturbation: Perturbation | None = None,
        optimizer: OptimizerConfig = HIERSPEECH2_OPTIMIZER,
        mel_weight: float = 45.0,
        kl_weight: float = 1.0,
        bidirectional_kl_weight: float = 0.5,
        f0_weight: float = 45.0,
        prosody_weight: float = 45.0,
        window_frames: int = 192,
        uncond_probability: float = 0.1,
        perturbed_target: LatentSource = "semantic_prior",
        prosody_source: LatentSource = "semantic_prior",
        freeze: tuple[str, ...] = (),
        validation_f0_rmse: bool = False,
        validation_speaker_model: str | None = None,
        **gan_options: Any,
    ) -> None:
        for name, value in (("perturbed_target", perturbed_target), ("prosody_source", prosody_source)):
            if value not in LATENT_SOURCES:
                raise ValueError(f"{name} must be one of {LATENT_SOURCES}, got {value!r}")
        weights = loss_weights(locals())
        if not 0 <= uncond_probability <= 1:
            raise ValueError(f"uncond_probability must be in [0, 1], got {uncond_probability}")
        model = model if model is not None else HierSpeech2()
        if uncond_probability > 0 and not hasattr(model, "null_style"):
            raise ValueError(
                "uncond_probability > 0 needs the null style embedding: build the model with cfg: true, "
                "or set uncond_probability: 0"
            )
        super().__init__(
            model,
            discriminator if discriminator is not None else MultiDiscriminator(),
            optimizer=optimizer,
            **gan_options,
        )
        self.save_task_hyperparameters(("model", "discriminator", "perturbation", "semantic_encoder"))
        self.weights = weights
        self.window_frames = window_frames
        self.uncond_probability = uncond_probability
        self.perturbed_target = perturbed_target
        self.prosody_source = prosody_source
        self.validation_f0_rmse = validation_f0_rmse
        self.validation_speaker_model = validation_speaker_model
        self.perturbation = perturbation
        self.semantic_layer = semantic_layer
        # Not a submodule: the frozen MMS encoder (~90M weights) stays out of checkpoints, the
        # optimizers and DDP; it follows the task's device on use.
        object.__setattr__(self, "_semantic_encoder", semantic_encoder)
        self.mel_loss = MelL1Loss(LogMelSpectrogram())
        self.l1 = MaskedL1Loss()
        self.kl = GaussianKLLoss()
        self.frozen = self.freeze_parts(freeze)
        self._warned_clean = False

    # ---- setup ------------------------------------------------------------------------------

    def freeze_parts(self, names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
        """Stop training the named parts of the backbone; returns their native names."""
        known = _module_names()
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(
                f"cannot freeze {unknown}: not parts of HierSpeech2; use any of "
                f"{sorted(set(known.values()))} or their official names "
                f"{sorted(set(known) - set(known.values()))}"
            )
        frozen = tuple(dict.fromkeys(known[name] for name in names))
        for name in frozen:
            part = getattr(self.model, name, None)
            if part is None:
                raise ValueError(f"this HierSpeech2 has no {name} (built with cfg=False?)")
            part.requires_grad_(False)
        return frozen

    def semantic_encoder(self) -> nn.Module | None:
        """The frozen encoder of perturbed audio, loaded on first use and moved to the task's device."""
        encoder = self._semantic_encoder
        if isinstance(encoder, str):
            encoder = self._load_semantic_encoder(encoder)
            object.__setattr__(self, "_semantic_encoder", encoder)
        if encoder is None:
            return None
        parameter = next(encoder.parameters(), None)
        if parameter is not None and parameter.device != self.device:
            encoder.to(self.device)
        return encoder.eval().requires_grad_(False)

    def _load_semantic_encoder(self, name: str) -> nn.Module:
        from ..registry import default_registry, load_model
        from ..ssl import SemanticEncoder

        if name not in default_registry() and Path(name).expanduser().is_dir():
            return SemanticEncoder.from_pretrained(Path(name).expanduser(), layer=self.semantic_layer)
        encoder = load_model(name)
        if not isinstance(encoder, SemanticEncoder):
            raise TypeError(
                f"semantic_encoder {name!r} holds a {type(encoder).__name__}, not a semantic encoder; "
                f"use {MMS_ENTRY!r} or a transformers Wav2Vec2 folder"
            )
        return encoder

    # ---- the objective --------------------------------------------------------------------------

    def perturbed_semantic(self, batch: BackboneBatch) -> Tensor:
        """Semantic features [B, D, T] of the batch's perturbed audio (the clean ones when none is set)."""
        audio = batch.perturbed_audio
        if audio is None and self.perturbation is not None:
            audio = self.perturbation(batch.audio[:, 0]).unsqueeze(1)
        if audio is None:
            if not self._warned_clean:
                logger.warning(
                    "no perturbed audio (set data.init_args.perturb or model.init_args.perturbation): "
                    "the perturbed prior encoder trains on clean semantic features"
                )
                self._warned_clean = True
            return batch.semantic
        encoder = self.semantic_encoder()
        if encoder is None:
            raise ValueError(
                "the batch carries perturbed audio but the task has no semantic_encoder to read it; "
                "set model.init_args.semantic_encoder (e.g. mms-300m)"
            )
        with torch.no_grad():
            features = encoder(audio[:, 0])
        frames = batch.semantic.shape[-1]
        if features.shape[1] != batch.semantic.shape[1]:
            raise ValueError(
                f"the semantic encoder gives {features.shape[1]} channels but the batch's cached "
                f"features have {batch.semantic.shape[1]}; use the encoder the cache was made with"
            )
        features = F.pad(features, (0, max(0, frames - features.shape[-1])))[..., :frames]
        return features.to(batch.semantic.dtype) * batch.frame_mask

    def forward_pass(self, batch: BackboneBatch) -> TrainingOutput:
        """The networks' training pass on a batch (see
        :func:`~hierspeech2.models.backbone_training.training_forward`)."""
        return training_forward(
            self.model,
            linear=batch.linear,
            audio=batch.audio,
            mel=batch.mel,
            semantic=batch.semantic,
            perturbed_semantic=self.perturbed_semantic(batch),
            log_f0=batch.log_f0,
            frame_lengths=batch.frame_lengths,
            window_frames=self.window_frames,
            uncond_probability=self.uncond_probability,
            perturbed_target=self.perturbed_target,
            prosody_source=self.prosody_source,
            bidirectional=self.weights["bidirectional_kl"] > 0,
        )

    def generate(self, batch: BackboneBatch) -> tuple[Tensor, Tensor, dict[str, Any]]:
        output = self.forward_pass(batch)
        real, log_f0 = window_targets(
            batch.audio, batch.log_f0, output.window_starts, output.window_frames, self.model.hop_length
        )
        return output.waveform, real, {"output": output, "log_f0": log_f0}

    def reconstruction_terms(
        self, batch: BackboneBatch, fake: Tensor, real: Tensor, extra: dict[str, Any]
    ) -> dict[str, Tensor]:
        out: TrainingOutput = extra["output"]
        mask, w = out.frame_mask, self.weights
        prosody_bins = out.prosody_pred.shape[1]
        terms = {
            "mel": w["mel"] * self.mel_loss(fake, real),
            "kl": w["kl"]
            * self.kl(
                out.flowed_posterior, out.posterior_log_std, out.semantic_mean, out.semantic_log_std, mask
            ),
            "kl_perturbed": w["kl"]
            * self.kl(
                out.flowed_perturbed_input,
                out.perturbed_input_log_std,
                out.perturbed_mean,
                out.perturbed_log_std,
                mask,
            ),
            "f0": w["f0"] * F.l1_loss(out.log_f0_pred.float(), extra["log_f0"].float()),
            "prosody": w["prosody"]
            * self.l1(out.prosody_pred.float(), batch.mel[:, :prosody_bins].float(), mask),
        }
        if out.semantic_to_posterior is not None and out.perturbed_to_semantic is not None:
            # a prior sample brought one level down, scored under that level's Gaussian
            terms["kl_reverse"] = w["bidirectional_kl"] * self.kl(
                out.semantic_to_posterior,
                out.semantic_log_std,
                out.posterior_mean,
                out.posterior_log_std,
                mask,
            )
            terms["kl_perturbed_reverse"] = w["bidirectional_kl"] * self.kl(
                out.perturbed_to_semantic,
                out.perturbed_log_std,
                out.semantic_mean,
                out.semantic_log_std,
                mask,
            )
        return terms

    # ---- validation -------------------------------------------------------------------------------

    def validation_step(self, batch: BackboneBatch, batch_idx: int) -> None:
        model, hop = self.model, self.model.hop_length
        batch_size = batch.semantic.shape[0]
        mask = batch.frame_mask
        style = model.encode_style(batch.mel, batch.frame_lengths, batch_size)
        posterior_mean, _ = model.posterior_encoder(batch.linear, batch.audio, mask, style)
        reconstructed, _ = model.synthesize(posterior_mean * mask, style)
        # the inference path: clean MMS + F0 through the perturbed prior and both flows
        resynthesized = model.voice_conversion(
            batch.semantic, batch.frame_lengths, batch.mel, batch.frame_lengths, batch.log_f0
        )
        metrics = {}
        for name, wav in (("reconstruction", reconstructed), ("resynthesis", resynthesized)):
            fake_mel = self.mel_loss.mel(wav.float()).squeeze(1)
            metrics[f"val/{name}_mel_l1"] = self.l1(fake_mel, batch.mel.float(), mask)
        metrics["val/mel_l1"] = metrics["val/resynthesis_mel_l1"]
        if self.validation_f0_rmse:
            metrics["val/f0_rmse"] = self._f0_rmse(resynthesized, batch)
        converted = None
        if batch_size > 1 and (self.validation_speaker_model or batch_idx == 0):
            # every row in the voice of the next one
            converted = model.voice_conversion(
                batch.semantic,
                batch.frame_lengths,
                batch.mel.roll(1, dims=0),
                batch.frame_lengths.roll(1),
                batch.log_f0,
            )
        if self.validation_speaker_model:
            metrics.update(self._speaker_similarities(batch, resynthesized, converted))
        self.log_dict(metrics, batch_size=batch_size, sync_dist=True)

        if batch_idx != 0 or not self.trainer.is_global_zero:
            return
        for index in range(min(self.log_examples, batch_size)):
            samples = int(batch.frame_lengths[index]) * hop
            examples = {
                "reconstructed": reconstructed,
                "resynthesized": resynthesized,
                "converted": converted,
            }
            if self.current_epoch == 0:
                examples["target"] = batch.audio
            for name, wav in examples.items():
                if wav is None:
                    continue
                clip = wav[index, 0, :samples]
                self.log_audio(f"val/{index}/{name}", clip, MODEL_SAMPLE_RATE)
                with torch.autocast(device_type=clip.device.type, enabled=False):
                    self.log_image(f"val/{index}/mel_{name}", self.mel_loss.mel(clip.float()))

    def _speaker_similarities(
        self, batch: BackboneBatch, resynthesized: Tensor, converted: Tensor | None
    ) -> dict[str, Tensor]:
        from ..evaluation import speaker_similarity

        lengths = (batch.frame_lengths * self.model.hop_length).tolist()

        def clips(wav: Tensor) -> list[Tensor]:
            return [wav[index, 0, :length].float().cpu() for index, length in enumerate(lengths)]

        recordings = clips(batch.audio)
        similarity = partial(
            speaker_similarity,
            sample_rate=MODEL_SAMPLE_RATE,
            model=self.validation_speaker_model,
            device=self.device,
        )
        metrics = {"val/resynthesis_similarity": similarity(clips(resynthesized), recordings).mean()}
        if converted is not None:
            voices = recordings[-1:] + recordings[:-1]  # the prompt of row i is row i - 1
            metrics["val/conversion_similarity"] = similarity(clips(converted), voices).mean()
        return {name: value.to(self.device) for name, value in metrics.items()}

    def _f0_rmse(self, wav: Tensor, batch: BackboneBatch) -> Tensor:
        from ..pitch import yaapt

        predicted = yaapt(wav[:, 0].float().cpu(), "training").to(batch.f0.device)
        length = min(predicted.shape[-1], batch.f0.shape[-1])
        predicted, target = predicted[..., :length], batch.f0[..., :length]
        voiced = (predicted > 0) & (target > 0)
        if not bool(voiced.any()):
            return batch.f0.new_zeros(())
        return ((predicted - target)[voiced] ** 2).mean().sqrt()
