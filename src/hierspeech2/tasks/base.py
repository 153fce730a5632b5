"""What every training task shares: optimizers with exponential decay, fine-tuning, export metadata and
media logging.

:class:`TrainingTask` holds the trainable model as ``self.model`` (the part that is
exported); :class:`GANTask` adds a discriminator and the manual-optimisation step of
HiFi-GAN-style training (discriminator update, then generator update), which the
SpeechSR and backbone tasks reuse.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import pickle
import random
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import official_to_native
from ..errors import CheckpointError, NonFiniteLossError, SettingError
from ..nn.losses import FeatureMatchingLoss, LeastSquaresGANLoss

logger = logging.getLogger(__name__)

EXPORT_KEY = "hierspeech2_export"  # where a Lightning checkpoint records how to rebuild the exported model
MODEL_PREFIX = "model."
RNG_KEY = "hierspeech2_rng_states"
MAX_NONFINITE_STEPS = 10  # consecutive skipped steps before training stops
# LightningCLI marks the hyper-parameters it hands a module (its parsed config) with this key, which
# load_from_checkpoint reads back; a module built in Python has no such key.
CLI_INSTANTIATOR_KEY = "_instantiator"


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW and its per-epoch ``lr · lr_decay^epoch`` schedule; defaults: the official backbone config.

    Every official config ("hierspeechpp_eng_kor", ``ttv_v1``, ``speechsr24k``/``48k``) trains with
    these betas, eps and weight decay (AdamW's default, which the official trainers keep);
    TextToVec uses learning rate 2e-4 and SpeechSR-48k decay 0.995 (:data:`TTV_OPTIMIZER`,
    :data:`SPEECHSR48K_OPTIMIZER`). A GAN task builds one optimizer per network from it.

    Args:
        learning_rate, betas, eps, weight_decay: AdamW's.
        lr_decay: the factor the learning rate is multiplied by after every epoch (ExponentialLR's gamma).
    """

    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.8, 0.99)
    eps: float = 1e-9
    weight_decay: float = 0.01
    lr_decay: float = 0.999

    def __post_init__(self) -> None:
        # Refuse settings that would only fail (or silently diverge) once training starts.
        object.__setattr__(self, "betas", tuple(self.betas))
        problems = []
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if len(self.betas) != 2 or not all(math.isfinite(b) and 0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            problems.append(f"eps must be >= 0, got {self.eps}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.lr_decay) and 0 < self.lr_decay <= 1):
            problems.append(
                f"lr_decay must be in (0, 1] (the per-epoch factor, e.g. 0.999), got {self.lr_decay}"
            )
        if problems:
            raise ValueError("invalid optimizer settings: " + "; ".join(problems))

    @classmethod
    def coerce(cls, value: OptimizerConfig | Mapping[str, Any]) -> OptimizerConfig:
        """``value`` itself, or the config a mapping describes (as checkpoint hyper-parameters hold it)."""
        return value if isinstance(value, cls) else cls(**value)

    def build(
        self, parameters: Iterable[nn.Parameter]
    ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.ExponentialLR]:
        """AdamW over ``parameters`` and its exponential decay (to be stepped once per epoch)."""
        optimizer = torch.optim.AdamW(
            parameters, lr=self.learning_rate, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay
        )
        return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.lr_decay)


HIERSPEECH2_OPTIMIZER = OptimizerConfig()  # hierspeechpp_eng_kor config (speechsr24k's is the same)
TTV_OPTIMIZER = OptimizerConfig(learning_rate=2e-4)  # ttv_v1/config.json
SPEECHSR48K_OPTIMIZER = OptimizerConfig(lr_decay=0.995)  # speechsr48k/config.json


def check_loss_weights(**weights: float) -> None:
    """Refuse loss weights that are not finite numbers >= 0 (null, NaN, negative)."""
    bad = {
        name: value
        for name, value in weights.items()
        if isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    }
    if bad:
        details = ", ".join(f"{name}={value!r}" for name, value in bad.items())
        raise ValueError(f"loss weights must be finite numbers >= 0 (0 turns a term off), got {details}")


def loss_weights(arguments: Mapping[str, Any]) -> dict[str, float]:
    """The ``<term>_weight`` entries of ``arguments`` (a task ``__init__``'s ``locals()``), checked by
    :func:`check_loss_weights`, as ``{term: weight}``."""
    weights = {name: value for name, value in arguments.items() if name.endswith("_weight")}
    check_loss_weights(**weights)
    return {name.removesuffix("_weight"): value for name, value in weights.items()}


def trainable(module: nn.Module) -> list[nn.Parameter]:
    """Parameters that require gradients (frozen parts stay out of the optimizer)."""
    return [parameter for parameter in module.parameters() if parameter.requires_grad]


def gradient_norm(parameters: Iterable[nn.Parameter]) -> Tensor:
    """Global L2 norm of the gradients present (0 when none)."""
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    if not norms:
        return torch.zeros(())
    return torch.stack(norms).norm()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _device_rng(device: torch.device) -> Any:
    """The generator API of ``device``'s type (``torch.cuda``, ``torch.mps``, ``torch.xpu``);
    None for the CPU."""
    if device.type == "cpu":
        return None
    module = getattr(torch, device.type, None)
    return module if hasattr(module, "get_rng_state") and hasattr(module, "set_rng_state") else None


def collect_rng_states(device: torch.device) -> dict[str, Any]:
    """The global generators a training step draws noise from: torch's CPU one, Python's, ``device``'s.

    Only states that ``torch.load(weights_only=True)`` reads back (numpy's is an ndarray, and no
    training step draws from it).
    """
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    module = _device_rng(device)
    if module is not None:
        states[f"torch.{device.type}"] = module.get_rng_state(device)
    return states


def restore_rng_states(states: Mapping[str, Any], device: torch.device) -> None:
    """Set the generators :func:`collect_rng_states` recorded (a device state only on that device type)."""
    torch.set_rng_state(states["torch"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    device_state = states.get(f"torch.{device.type}")
    module = _device_rng(device)
    if module is None or device_state is None:
        return
    if isinstance(device_state, (list, tuple)):  # Lightning's layout, one state per visible device
        device_state = device_state[device.index or 0]
    module.set_rng_state(device_state, device)


def require_unused_parameter_detection(wrapped: nn.Module | None) -> None:
    """Refuse a DDP wrapper that ignores unused parameters (each GAN update leaves a network without
    gradients)."""
    if isinstance(wrapped, DistributedDataParallel) and not wrapped.find_unused_parameters:
        raise SettingError(
            "GAN tasks need DDP to look for unused parameters (each of the two updates leaves the other "
            "network without gradients): use --trainer.strategy ddp_find_unused_parameters_true, or "
            "Trainer(strategy=DDPStrategy(find_unused_parameters=True)) (the lightning command turns "
            "plain ddp into it for GAN tasks)"
        )


def spectrogram_image(spec: Tensor) -> Tensor:
    """[F, T] spectrogram-like tensor → [1, F, T] image in [0, 1], low frequencies at the bottom."""
    spec = spec.detach().float().cpu()
    low, high = spec.min(), spec.max()
    image = (spec - low) / (high - low).clamp_min(1e-8)
    return image.flip(0).unsqueeze(0)


class TrainingTask(pl.LightningModule):
    """Base LightningModule: ``self.model`` is trained, fine-tuned with ``init_from`` and exported.

    Args:
        model: the model being trained (a ``NativeCheckpointMixin`` model, so it exports).
        init_from: registry name (e.g. ``ttv-lt960``), checkpoint file or native folder whose
            weights replace the fresh ones before training (strict: the configs must match).
        log_examples: validation examples whose media (audio, spectrogram images) are logged.
        max_nonfinite_steps: a step whose loss is NaN/Inf is skipped (no weight update) with a
            warning; more consecutive skipped steps than this stop training with
            :class:`~hierspeech2.errors.NonFiniteLossError` (0: stop at the first one).
        optimizer: AdamW and its per-epoch decay (:class:`OptimizerConfig`, or a mapping of its
            fields), kept as ``optimizer_config`` for ``configure_optimizers``.
    """

    def __init__(
        self,
        model: nn.Module,
        init_from: str | None = None,
        log_examples: int = 2,
        max_nonfinite_steps: int = MAX_NONFINITE_STEPS,
        optimizer: OptimizerConfig | Mapping[str, Any] = HIERSPEECH2_OPTIMIZER,
    ) -> None:
        optimizer = OptimizerConfig.coerce(optimizer)
        super().__init__()
        if max_nonfinite_steps < 0:
            raise ValueError(f"max_nonfinite_steps must be >= 0, got {max_nonfinite_steps}")
        self.model = model
        self.optimizer_config = optimizer
        self.init_from = init_from
        self.log_examples = log_examples
        self.max_nonfinite_steps = max_nonfinite_steps
        self.skipped_nonfinite_steps = 0
        self.consecutive_nonfinite_steps = 0
        if init_from:
            self.load_model_weights(init_from)

    def save_task_hyperparameters(self, submodules: tuple[str, ...]) -> None:
        """``save_hyperparameters`` of the calling ``__init__``, keeping submodules only as configs.

        Under the LightningCLI the hyper-parameters are the parsed config, where submodules are
        ``class_path`` dicts: they are kept, so ``load_from_checkpoint`` rebuilds the task. A task
        built in Python receives module objects, which the checkpoint's state dict already holds.
        Dataclass settings (:class:`OptimizerConfig`) are kept as plain dicts, as the CLI's config
        holds them, so checkpoints load with ``torch.load(weights_only=True)``.
        """
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        self.save_hyperparameters(ignore=list(submodules), frame=caller)
        if CLI_INSTANTIATOR_KEY in self.hparams:
            # the CLI's config: read again without dropping the submodules' class_path dicts
            self.save_hyperparameters(frame=caller)
        settings = {
            name: _jsonable(dataclasses.asdict(value))
            for name, value in self.hparams.items()
            if dataclasses.is_dataclass(value) and not isinstance(value, type)
        }
        if settings:
            self.save_hyperparameters(settings)

    def load_model_weights(self, name_or_path: str) -> None:
        """Copy the weights of a released or exported model into ``self.model`` (strict)."""
        from ..registry import load_model

        source = load_model(name_or_path)
        if not isinstance(source, nn.Module) or type(source) is not type(self.model):
            raise CheckpointError(
                f"--model.init_from {name_or_path!r} holds a {type(source).__name__}, but this task trains a "
                f"{type(self.model).__name__}; pick a checkpoint of the same model family"
            )
        try:
            self.model.load_state_dict(self.initial_weights(source), strict=True)
        except RuntimeError as error:
            raise CheckpointError(
                f"cannot start from {name_or_path!r}: its weights do not fit the configured model "
                f"(set the model's init_args to the checkpoint's configuration): {error}"
            ) from error
        logger.info("initialised %s from %s", type(self.model).__name__, name_or_path)

    def initial_weights(self, source: nn.Module) -> dict[str, Tensor]:
        """The state dict ``init_from`` loads into ``self.model`` from ``source`` (a model of its class)."""
        return source.state_dict()

    # ---- non-finite losses ------------------------------------------------------------------

    def skip_nonfinite(self, **losses: Tensor) -> bool:
        """True (after a warning) when any loss is NaN/Inf on any rank, so the caller skips its update.

        Every rank takes the same decision, so DDP stays in step. After ``max_nonfinite_steps``
        consecutive skipped steps the next one raises :class:`~hierspeech2.errors.NonFiniteLossError`.
        """
        bad = sorted(name for name, loss in losses.items() if not bool(torch.isfinite(loss.detach()).all()))
        finite = not bad
        trainer = self._trainer  # None outside a Trainer (a task called directly)
        if trainer is not None:
            finite = bool(trainer.strategy.reduce_boolean_decision(finite, all=True))
        if finite:
            self.consecutive_nonfinite_steps = 0
            return False
        self.skipped_nonfinite_steps += 1
        self.consecutive_nonfinite_steps += 1
        where = ", ".join(bad) if bad else "another rank's loss"
        step = self.global_step if trainer is not None else "?"
        if self.consecutive_nonfinite_steps > self.max_nonfinite_steps:
            raise NonFiniteLossError(
                f"the training loss was NaN/Inf for {self.consecutive_nonfinite_steps} consecutive steps "
                f"(last: {where} at global step {step}; {self.skipped_nonfinite_steps} skipped in all). "
                "Lower the learning rate (or set grad_clip), train with --trainer.precision bf16-mixed or "
                "32-true rather than 16-mixed, and check the data for silent, clipped or NaN audio; "
                "max_nonfinite_steps sets how many consecutive bad steps are tolerated"
            )
        warnings.warn(
            f"non-finite loss ({where}) at global step {step}: skipped the update "
            f"({self.skipped_nonfinite_steps} skipped so far, {self.consecutive_nonfinite_steps} in a row; "
            f"training stops after {self.max_nonfinite_steps})",
            RuntimeWarning,
            stacklevel=2,
        )
        return True

    # ---- export -------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The training steps draw noise from the global generators (posterior samples,
        # windows, duration noise): restoring them makes a resumed run continue exactly.
        checkpoint[RNG_KEY] = collect_rng_states(self._rng_device())
        config = getattr(self.model, "_hub_mixin_config", None)
        if config is None:
            return
        checkpoint[EXPORT_KEY] = {
            "model_class": type(self.model).__name__,
            "model_config": _jsonable(config),
            "state_prefix": MODEL_PREFIX,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(RNG_KEY)
        if states is None:
            return
        try:
            restore_rng_states(states, self._rng_device())
        except (RuntimeError, ValueError, IndexError) as error:
            # e.g. a GPU run resumed with another number of devices
            logger.warning(
                "could not restore the random generators from the checkpoint (%s); resuming anyway", error
            )

    def _rng_device(self) -> torch.device:
        # the Trainer's device: a checkpoint is restored before the strategy moves the module there
        trainer = self._trainer
        return trainer.strategy.root_device if trainer is not None else self.device

    # ---- logging ------------------------------------------------------------------------

    def log_audio(self, tag: str, wav: Tensor, sample_rate: int) -> None:
        """Log a waveform [N] to every logger that takes audio (TensorBoard, W&B)."""
        wav = wav.detach().float().cpu().clamp(-1, 1)
        for run_logger in self.loggers:
            experiment = run_logger.experiment
            if hasattr(experiment, "add_audio"):
                experiment.add_audio(tag, wav.unsqueeze(0), self.global_step, sample_rate=sample_rate)
            elif hasattr(run_logger, "log_audio"):
                run_logger.log_audio(tag, [wav.numpy()], step=self.global_step, sample_rate=[sample_rate])

    def log_image(self, tag: str, spec: Tensor) -> None:
        """Log a spectrogram-like [F, T] tensor as an image to every logger that takes images."""
        image = spectrogram_image(spec)
        for run_logger in self.loggers:
            experiment = run_logger.experiment
            if hasattr(experiment, "add_image"):
                experiment.add_image(tag, image, self.global_step, dataformats="CHW")
            elif hasattr(run_logger, "log_image"):
                run_logger.log_image(tag, [image.squeeze(0).numpy()], step=self.global_step)


class GANTask(TrainingTask):
    """Generator + discriminator trained by manual optimisation (LSGAN + feature matching).

    A subclass implements :meth:`generate` (fake and real audio for a batch) and
    :meth:`reconstruction_terms` (its non-adversarial generator losses, weighted); this
    class does the discriminator update, then the generator update, logs both, and steps
    the exponential-decay schedulers once per epoch. ``trainer.global_step`` counts both
    optimizers' steps (Lightning #17958), so ``max_steps`` is twice the number of batches.

    Args:
        model: the generator (the exported model).
        discriminator: e.g. :class:`~hierspeech2.nn.discriminators.MultiDiscriminator`.
        optimizer: AdamW and its per-epoch decay, one optimizer per network with the same
            settings (as the official configs).
        adversarial_weight, feature_matching_weight: weights of the generator's GAN terms.
        grad_clip: clip each optimizer's gradients to this global norm (None = no clipping,
            as the official trainers, which only measure the norm).
        max_nonfinite_steps: see :class:`TrainingTask`; a NaN/Inf discriminator loss skips the
            whole step, a NaN/Inf generator loss the generator update.
        discriminator_init_from: a Lightning checkpoint of this task or an official
            discriminator state dict (``D_*.pth``) to start the discriminator from.
    """

    def __init__(
        self,
        model: nn.Module,
        discriminator: nn.Module,
        optimizer: OptimizerConfig = HIERSPEECH2_OPTIMIZER,
        adversarial_weight: float = 1.0,
        feature_matching_weight: float = 1.0,
        grad_clip: float | None = None,
        init_from: str | None = None,
        discriminator_init_from: str | None = None,
        log_examples: int = 2,
        max_nonfinite_steps: int = MAX_NONFINITE_STEPS,
    ) -> None:
        check_loss_weights(
            adversarial_weight=adversarial_weight, feature_matching_weight=feature_matching_weight
        )
        if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
            raise ValueError(f"grad_clip must be a positive norm or null (no clipping), got {grad_clip}")
        super().__init__(
            model,
            init_from=init_from,
            log_examples=log_examples,
            max_nonfinite_steps=max_nonfinite_steps,
            optimizer=optimizer,
        )
        self.automatic_optimization = False
        self.discriminator = discriminator
        self.adversarial_weight = adversarial_weight
        self.feature_matching_weight = feature_matching_weight
        self.grad_clip = grad_clip
        self.gan_loss = LeastSquaresGANLoss()
        self.feature_matching_loss = FeatureMatchingLoss()
        if discriminator_init_from:
            self.load_discriminator_weights(discriminator_init_from)

    def load_discriminator_weights(self, path: str) -> None:
        """Discriminator weights from a Lightning checkpoint (``discriminator.*``) or an official
        ``D_*.pth``."""
        from ..checkpoint import load_official_file

        if str(path).endswith(".ckpt"):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
            except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError) as error:
                raise CheckpointError(
                    f"cannot read discriminator weights from {path}: not a plain Lightning checkpoint "
                    f"(refusing anything that would run code when loaded): {error}"
                ) from error
            state = {
                k[len("discriminator.") :]: v for k, v in state.items() if k.startswith("discriminator.")
            }
        else:
            state = official_to_native(load_official_file(path))
        # the official STFT discriminators store their (fixed) window; ours derives it
        state = {k: v for k, v in state.items() if not k.endswith("spec_transform.window")}
        try:
            self.discriminator.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CheckpointError(
                f"cannot start the discriminator from {path}: its keys or shapes do not match the configured "
                f"discriminator (periods/resolutions must be the same): {error}"
            ) from error

    def on_fit_start(self) -> None:
        # Each of the two backward passes leaves the other network without gradients, which
        # DDP's reducer only accepts when it looks for unused parameters; plain `ddp` fails
        # once training starts. The strategy has wrapped the module by now.
        require_unused_parameter_detection(self.trainer.strategy.model)

    def configure_optimizers(self) -> Any:
        opt_g, sched_g = self.optimizer_config.build(trainable(self.model))
        opt_d, sched_d = self.optimizer_config.build(trainable(self.discriminator))
        return [opt_g, opt_d], [sched_g, sched_d]

    # ---- what a subclass provides ----------------------------------------------------------

    def generate(self, batch: Any) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """(fake [B, 1, N], real [B, 1, N], anything :meth:`reconstruction_terms` needs)."""
        raise NotImplementedError

    def reconstruction_terms(
        self, batch: Any, fake: Tensor, real: Tensor, extra: dict[str, Any]
    ) -> dict[str, Tensor]:
        """Weighted non-adversarial generator losses by logged name (e.g. ``{"mel": 45 · L1}``)."""
        raise NotImplementedError

    # ---- the step ------------------------------------------------------------------------------

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """LSGAN discriminator loss on real and (detached) generated audio [B, 1, N]."""
        real_logits, _ = self.discriminator(real)
        fake_logits, _ = self.discriminator(fake.detach())
        return self.gan_loss.discriminator_loss(real_logits, fake_logits)

    def adversarial_terms(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Weighted generator GAN terms: ``adversarial`` (LSGAN) and ``feature_matching``."""
        with torch.no_grad():
            _, real_features = self.discriminator(real)
        fake_logits, fake_features = self.discriminator(fake)
        return {
            "adversarial": self.adversarial_weight * self.gan_loss.generator_loss(fake_logits),
            "feature_matching": self.feature_matching_weight
            * self.feature_matching_loss(real_features, fake_features),
        }

    @contextmanager
    def _optimizing(self, optimizer: Any) -> Iterator[None]:
        # toggle_optimizer freezes the other network, so its parameters get no gradient
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def _update(self, optimizer: Any, loss: Tensor, parameters: list[nn.Parameter]) -> Tensor:
        optimizer.zero_grad()
        self.manual_backward(loss)
        norm = gradient_norm(parameters)  # before clipping (under 16-mixed: of the scaled gradients)
        if self.grad_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()
        return norm

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        fake, real, extra = self.generate(batch)

        batch_size = real.shape[0]

        with self._optimizing(opt_d):
            d_loss = self.discriminator_loss(real, fake)
            if self.skip_nonfinite(discriminator=d_loss):
                self._log_skipped(batch_size)
                return
            d_norm = self._update(opt_d, d_loss, list(self.discriminator.parameters()))

        with self._optimizing(opt_g):
            terms = self.reconstruction_terms(batch, fake, real, extra) | self.adversarial_terms(real, fake)
            g_loss = torch.stack(list(terms.values())).sum()
            if self.skip_nonfinite(generator=g_loss):
                self._log_skipped(batch_size)
                return
            g_norm = self._update(opt_g, g_loss, list(self.model.parameters()))

        self.log_dict(
            {f"train/{name}": value.detach() for name, value in terms.items()}, batch_size=batch_size
        )
        self.log_dict(
            {
                "train/generator": g_loss.detach(),
                "train/discriminator": d_loss.detach(),
                "train/grad_norm_generator": g_norm,
                "train/grad_norm_discriminator": d_norm,
                "train/lr": torch.tensor(opt_g.param_groups[0]["lr"]),
            },
            prog_bar=False,
            batch_size=batch_size,
        )
        self.log("loss", g_loss.detach(), prog_bar=True, logger=False, batch_size=batch_size)

    def _log_skipped(self, batch_size: int) -> None:
        self.log("train/skipped_nonfinite", float(self.skipped_nonfinite_steps), batch_size=batch_size)

    def on_train_epoch_end(self) -> None:
        for scheduler in self.lr_schedulers():
            scheduler.step()
