"""HierSpeech2Task: the reconstructed backbone objective, its options, training, fine-tuning, DDP, resume."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_models import one_thread
from tiny_training import LossHistory, energy_f0, tiny_semantic_encoder, trainer
from torch.utils.data import DataLoader, Dataset

from hierspeech2 import load_model
from hierspeech2.audio import LinearSpectrogram, LogMelSpectrogram
from hierspeech2.data.batch import BackboneBatch
from hierspeech2.data.datasets import collate_backbone
from hierspeech2.data.perturbation import Perturbation
from hierspeech2.errors import CheckpointError
from hierspeech2.models import HierSpeech2
from hierspeech2.models.backbone_training import training_forward
from hierspeech2.nn.discriminators import MultiDiscriminator
from hierspeech2.nn.functional import slice_segments
from hierspeech2.tasks.backbone import HierSpeech2Task
from hierspeech2.tasks.base import OptimizerConfig
from hierspeech2.tasks.export import export
from hierspeech2.training_cli import HierSpeechCLI, main

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
SHARED_DATA = ROOT.parent / "shared" / "data"
SEMANTIC = 32  # channels of tiny_training.tiny_semantic_encoder
FRAMES = 32
TINY = {
    "semantic_channels": SEMANTIC, "inter_channels": 8, "hidden_channels": 8, "filter_channels": 16,
    "resblock_kernel_sizes": (3,), "resblock_dilation_sizes": ((1, 3),), "upsample_rates": (4, 5, 4, 4),
    "upsample_initial_channel": 16, "upsample_kernel_sizes": (8, 11, 8, 8), "gin_channels": 8,
    "prosody_size": 20, "style_hidden_channels": 8, "posterior_layers": 1, "prior_layers": 1,
    "flow_layers": 1, "n_flows": 1, "audio_encoder_channels": (4, 4, 4, 8),
    "audio_downsample_rates": (8, 5, 8), "audio_downsample_kernel_sizes": (16, 10, 16),
}  # fmt: skip
TINY_DISCRIMINATOR = {
    "periods": (2, 3),
    "resolutions": ((256, 64, 256),),
    "period_channels": (4, 8),
    "stft_channels": 4,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder():
    return tiny_semantic_encoder()


# ------------------------------------------------------------------------------ synthetic data


class SyntheticBackboneDataset(Dataset):
    """Vowel-like harmonic segments with a gliding F0, their spectra and stand-in MMS features."""

    def __init__(self, size: int = 8, frames: int = FRAMES, seed: int = 0, ragged: bool = True) -> None:
        encoder = tiny_semantic_encoder()
        linear, mel = LinearSpectrogram(), LogMelSpectrogram()
        self.items = []
        generator = torch.Generator().manual_seed(seed)
        time = torch.arange(frames * 320) / 16000
        for index in range(size):
            length = frames - (index % 3) * 2 * ragged  # some rows padded
            start, end = 100 + 120 * torch.rand(2, generator=generator)
            f0 = torch.linspace(float(start), float(end), frames * 320)
            phase = 2 * math.pi * torch.cumsum(f0, 0) / 16000
            harmonics = torch.arange(1, 25)[:, None]
            weights = torch.exp(-((harmonics * f0 - 700 - 300 * (index % 4)) ** 2) / 2e5) + 0.05
            audio = 0.3 * (weights * torch.sin(harmonics * phase)).sum(0) / weights.sum(0)
            audio = audio * (0.5 + 0.5 * torch.sin(2 * math.pi * 2 * time + index)) ** 2
            audio = audio[: length * 320]
            with torch.no_grad():
                semantic = encoder(audio[None])[0, :, :length]
            self.items.append(
                {
                    "audio": audio,
                    "linear": linear(audio),
                    "mel": mel(audio),
                    "semantic": semantic,
                    "f0": f0[: length * 320 : 80].clone(),
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


class SyntheticBackboneData(pl.LightningDataModule):
    """Loads :class:`SyntheticBackboneDataset` into :class:`BackboneBatch` batches (importable by path)."""

    def __init__(
        self, batch_size: int = 4, size: int = 8, frames: int = FRAMES, seed: int = 0, ragged: bool = True
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.train_set = SyntheticBackboneDataset(size, frames, seed, ragged)
        self.val_set = SyntheticBackboneDataset(2, frames, seed + 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, self.batch_size, shuffle=True, collate_fn=collate_backbone)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, 2, collate_fn=collate_backbone)


@pytest.fixture(scope="module")
def data() -> SyntheticBackboneData:
    return SyntheticBackboneData()


@pytest.fixture(scope="module")
def batch(data) -> BackboneBatch:
    return collate_backbone([data.train_set[i] for i in range(3)])


def tiny_task(encoder=None, model: HierSpeech2 | None = None, **kwargs) -> HierSpeech2Task:
    options = {
        "semantic_encoder": encoder if encoder is not None else tiny_semantic_encoder(),
        "perturbation": Perturbation(seed=0),
        "optimizer": OptimizerConfig(learning_rate=2e-3),
        "window_frames": 16,
    } | kwargs
    model = model if model is not None else HierSpeech2(**TINY)
    return HierSpeech2Task(model, MultiDiscriminator(**TINY_DISCRIMINATOR), **options)


# ------------------------------------------------------------------------------ the objective


def test_terms_follow_their_definitions(batch, encoder) -> None:
    task = tiny_task(encoder, uncond_probability=0.0)
    torch.manual_seed(0)
    fake, real, extra = task.generate(batch)
    terms = task.reconstruction_terms(batch, fake, real, extra)
    out = extra["output"]
    mask = batch.frame_mask
    assert set(terms) == {"mel", "kl", "kl_perturbed", "kl_reverse", "kl_perturbed_reverse", "f0", "prosody"}
    assert fake.shape == real.shape == (3, 1, 16 * 320) and out.window_frames == 16
    # the real audio and F0 sit under the same window of the batch
    for row, start in enumerate(out.window_starts.tolist()):
        assert torch.equal(real[row, 0], batch.audio[row, 0, start * 320 : (start + 16) * 320])
        assert torch.equal(
            extra["log_f0"][row, 0], torch.log1p(batch.f0[row, 0, start * 4 : (start + 16) * 4])
        )

    def kl(z, log_std_q, mean_p, log_std_p) -> torch.Tensor:
        values = log_std_p - log_std_q - 0.5 + 0.5 * (z - mean_p) ** 2 * torch.exp(-2 * log_std_p)
        return (values * mask).sum() / mask.sum()

    expected = {
        "kl": kl(out.flowed_posterior, out.posterior_log_std, out.semantic_mean, out.semantic_log_std),
        "kl_perturbed": kl(
            out.flowed_perturbed_input, out.semantic_log_std, out.perturbed_mean, out.perturbed_log_std
        ),
        "kl_reverse": 0.5
        * kl(out.semantic_to_posterior, out.semantic_log_std, out.posterior_mean, out.posterior_log_std),
        "kl_perturbed_reverse": 0.5
        * kl(out.perturbed_to_semantic, out.perturbed_log_std, out.semantic_mean, out.semantic_log_std),
        "f0": 45 * (out.log_f0_pred - extra["log_f0"]).abs().mean(),
        # first 20 bins, normalised by valid frames x 20
        "prosody": 45 * ((out.prosody_pred - batch.mel[:, :20]).abs() * mask).sum() / (mask.sum() * 20),
        "mel": 45 * (task.mel_loss.mel(fake) - task.mel_loss.mel(real)).abs().mean(),
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-4), name
    # the perturbed path reads a sample of the clean prior (default routing)
    assert torch.equal(out.perturbed_input_log_std, out.semantic_log_std)
    assert not torch.equal(out.perturbed_input, out.flowed_posterior)


def test_reconstructed_routings_and_weights_are_options(batch, encoder) -> None:
    torch.manual_seed(0)
    task = tiny_task(
        encoder,
        perturbed_target="flowed_posterior",
        prosody_source="flowed_posterior",
        bidirectional_kl_weight=0.0,
        f0_weight=2.0,
    )
    output = task.forward_pass(batch)
    assert output.perturbed_input is output.flowed_posterior
    assert torch.equal(output.perturbed_input_log_std, output.posterior_log_std)
    assert output.semantic_to_posterior is None and output.perturbed_to_semantic is None
    fake, real, extra = task.generate(batch)
    terms = task.reconstruction_terms(batch, fake, real, extra)
    assert "kl_reverse" not in terms and "kl_perturbed_reverse" not in terms
    assert terms["f0"].item() == pytest.approx(
        2.0 * (extra["output"].log_f0_pred - extra["log_f0"]).abs().mean().item(), rel=1e-5
    )
    task.model.eval()  # no dropout: the decoder's input can be checked by running it again
    output = task.forward_pass(batch)
    expected = task.model.prosody_decoder(
        output.flowed_posterior, output.frame_mask, _style(task.model, batch)
    )
    assert torch.allclose(output.prosody_pred, expected, atol=1e-6)
    with pytest.raises(ValueError, match="perturbed_target"):
        tiny_task(encoder, perturbed_target="posterior")
    with pytest.raises(ValueError, match="cfg"):
        HierSpeech2Task(HierSpeech2(**(TINY | {"cfg": False})), semantic_encoder=None)


def _style(model: HierSpeech2, batch: BackboneBatch) -> torch.Tensor:
    return model.encode_style(batch.mel, batch.frame_lengths, batch.mel.shape[0])


def test_classifier_free_guidance_swaps_the_generator_style(batch) -> None:
    model = HierSpeech2(**TINY).eval()
    inputs = {
        "linear": batch.linear, "audio": batch.audio, "mel": batch.mel, "semantic": batch.semantic,
        "perturbed_semantic": batch.semantic, "log_f0": batch.log_f0, "frame_lengths": batch.frame_lengths,
        "window_frames": 12,
    }  # fmt: skip
    outputs = {}
    for probability in (0.0, 1.0):
        torch.manual_seed(0)
        outputs[probability] = training_forward(model, uncond_probability=probability, **inputs)
    kept, dropped = outputs[0.0], outputs[1.0]
    assert not kept.unconditional.any() and dropped.unconditional.all()
    z = slice_segments(dropped.posterior_sample, dropped.window_starts, 12)
    null = model.null_style_vector().expand(3, -1, -1)
    with torch.no_grad():
        assert torch.allclose(dropped.waveform, model.synthesize(z, null)[0], atol=1e-6)
        assert torch.allclose(kept.waveform, model.synthesize(z, _style(model, batch))[0], atol=1e-6)
    # the priors and flows keep the voice's style either way
    assert torch.equal(kept.perturbed_mean, dropped.perturbed_mean)
    dropped.waveform.sum().backward()
    assert model.null_style.weight.grad is not None and model.null_style.weight.grad.abs().sum() > 0


def test_perturbed_features_come_from_the_perturbed_audio(batch, encoder, caplog) -> None:
    task = tiny_task(encoder, perturbation=None)
    # batch without perturbed audio and nothing to make it: the clean features, with a warning
    with caplog.at_level(logging.WARNING, logger="hierspeech2.tasks.backbone"):
        assert task.perturbed_semantic(batch) is batch.semantic
    assert "perturbed prior encoder trains on clean" in caplog.text
    # perturbed audio from the datamodule: encoded by the frozen encoder, masked, frame-aligned
    perturbed_audio = Perturbation(seed=1)(batch.audio[:, 0]).unsqueeze(1)
    with_audio = BackboneBatch(**{**vars(batch), "perturbed_audio": perturbed_audio})
    features = task.perturbed_semantic(with_audio)
    with torch.no_grad():
        expected = encoder(perturbed_audio[:, 0])[..., :FRAMES] * batch.frame_mask
    assert torch.allclose(features, expected, atol=1e-6)
    assert not torch.allclose(features, batch.semantic, atol=1e-2)
    # or perturbed on the device by the task itself
    on_device = tiny_task(encoder, perturbation=Perturbation(seed=1)).perturbed_semantic(batch)
    assert torch.allclose(on_device, expected, atol=1e-5)
    # the encoder is not part of the task's state and gets no gradient
    assert not any(key.startswith("_semantic") for key in task.state_dict())
    assert all(not p.requires_grad for p in encoder.parameters())
    with pytest.raises(ValueError, match="semantic_encoder"):
        tiny_task(semantic_encoder=None).perturbed_semantic(with_audio)
    narrow = BackboneBatch(**{**vars(with_audio), "semantic": batch.semantic[:, :8]})
    with pytest.raises(ValueError, match="channels"):
        task.perturbed_semantic(narrow)


def test_frozen_parts_do_not_move(data, encoder) -> None:
    torch.manual_seed(0)
    task = tiny_task(encoder, freeze=("enc_p_l", "prior_encoder"))
    assert task.frozen == ("perturbed_prior_encoder", "prior_encoder")
    before = {k: v.detach().clone() for k, v in task.model.named_parameters()}
    trainer(max_steps=2).fit(task, data)
    after = dict(task.model.named_parameters())
    unchanged = {key for key, value in before.items() if torch.equal(value, after[key])}
    frozen = {key for key in before if key.startswith(("perturbed_prior_encoder.", "prior_encoder."))}
    assert frozen <= unchanged
    # besides the frozen parts, only what sits behind the flows' zero-initialised (adaLN-Zero and
    # output) layers, which pass no gradient back on a first step, and the unused null style
    others = unchanged - frozen
    assert all(key.startswith(("posterior_flow.", "perturbed_flow.", "null_style.")) for key in others), (
        others
    )
    with pytest.raises(ValueError, match="enc_p_l"):
        tiny_task(encoder, freeze=("text_encoder",))


# ------------------------------------------------------------------------------ training


def test_one_batch_overfit(encoder) -> None:
    # reconstruction terms only, on a fixed window (the whole segment): what one batch can be memorised to
    torch.manual_seed(0)
    data = SyntheticBackboneData(batch_size=2, size=2, frames=16, ragged=False)
    task = tiny_task(
        encoder,
        uncond_probability=0.0,
        optimizer=OptimizerConfig(learning_rate=1e-2),
        window_frames=16,
        adversarial_weight=0.0,
        feature_matching_weight=0.0,
    )
    histories = {key: LossHistory(f"train/{key}") for key in ("mel", "kl", "kl_perturbed", "f0")}
    trainer(max_steps=30, overfit_batches=1, callbacks=list(histories.values())).fit(task, data)
    assert len(histories["mel"].values) == 15

    def ratio(values: list[float]) -> float:
        return sum(values[-3:]) / sum(values[:3])

    assert ratio(histories["mel"].values) < 0.75, histories["mel"].values
    assert ratio(histories["f0"].values) < 0.5, histories["f0"].values
    assert ratio(histories["kl"].values + histories["kl_perturbed"].values) < 0.6


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> dict[str, str]:
    """A backbone cache of the shared mini LibriTTS made with the tiny MMS stand-in, and its folder."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared mini corpora not found at {SHARED_DATA} (clone the project next to ../shared)")
    from hierspeech2.data.corpora import read_corpus
    from hierspeech2.data.features import SemanticFeatures
    from hierspeech2.data.preprocess import preprocess

    out = tmp_path_factory.mktemp("backbone-cache")
    with one_thread():
        encoder = tiny_semantic_encoder()
        semantic = SemanticFeatures(encoder, name_or_path="tiny-random-mms", layer=1)
        corpus = read_corpus(SHARED_DATA / "mini-libritts")
        preprocess(
            corpus, out / "cache", "backbone", semantic=semantic, f0_extractor=energy_f0, progress=False
        )
        encoder.model.save_pretrained(out / "mms")
    return {"cache": str(out / "cache"), "mms": str(out / "mms")}


def recipe_args(shared_cache) -> list[str]:
    """Overrides pointing the tiny recipe at the test cache and its 32-channel stand-in MMS."""
    return [
        "--data.init_args.data_dir", shared_cache["cache"],
        "--model.init_args.model.init_args.semantic_channels", str(SEMANTIC),
        "--model.init_args.semantic_encoder", shared_cache["mms"], "--model.init_args.semantic_layer", "1",
    ]  # fmt: skip


def test_tiny_recipe_trains_and_mel_and_kl_fall(tmp_path, shared_cache) -> None:
    args = ["-c", str(RECIPES / "tiny" / "hierspeech2.yaml"), *recipe_args(shared_cache)]
    args += ["--trainer.logger", "false", "--trainer.enable_checkpointing", "false"]
    args += ["--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0"]
    args += ["--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "24"]
    cli = HierSpeechCLI(args, run=False)
    histories = {key: LossHistory(f"train/{key}") for key in ("mel", "kl", "kl_perturbed", "generator")}
    cli.trainer.callbacks.extend(histories.values())
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 24  # 12 batches, two optimizer steps each

    def ratio(values: list[float]) -> float:
        return (sum(values[-4:]) / 4) / (sum(values[:4]) / 4)

    mel, kl, kl_perturbed = (histories[key].values for key in ("mel", "kl", "kl_perturbed"))
    assert ratio(mel) < 0.85, mel
    assert ratio(kl) < 0.7, kl
    assert ratio(kl_perturbed) < 0.7, kl_perturbed


def test_bf16_mixed_runs_with_finite_losses(data, encoder) -> None:
    torch.manual_seed(0)
    history = LossHistory("train/generator")
    task = tiny_task(encoder)
    trainer(max_steps=4, precision="bf16-mixed", callbacks=[history]).fit(task, data)
    assert len(history.values) == 2 and all(math.isfinite(v) for v in history.values)
    assert all(torch.isfinite(p).all() for p in task.parameters())


def test_resume_matches_an_uninterrupted_run(tmp_path, data, encoder) -> None:
    def run(epochs: int, root: Path, ckpt_path=None):
        pl.seed_everything(0)
        # the global generators are restored on resume; a seeded Perturbation's own one would restart
        task = tiny_task(encoder, perturbation=Perturbation())
        checkpoint = ModelCheckpoint(dirpath=root, save_last=True)
        fit = trainer(
            max_epochs=epochs, limit_train_batches=1, enable_checkpointing=True, callbacks=[checkpoint]
        )
        fit.fit(task, data, ckpt_path=ckpt_path)
        return task

    straight = run(2, tmp_path / "straight")
    first = run(1, tmp_path / "first")
    resumed = run(2, tmp_path / "second", ckpt_path=tmp_path / "first" / "last.ckpt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    checkpoint = torch.load(tmp_path / "first" / "last.ckpt", weights_only=True)
    assert not any(key.startswith("_semantic") for key in checkpoint["state_dict"])  # MMS stays out
    # a run exports to the native format and loads back as the trained HierSpeech2
    exported = load_model(export(tmp_path / "first" / "last.ckpt", tmp_path / "exported"))
    assert isinstance(exported, HierSpeech2)
    trained = first.model.state_dict()
    for key, value in exported.state_dict().items():
        assert torch.equal(value, trained[key]), key


def test_validation_logs_metrics_audio_and_images(data, encoder) -> None:
    class Recorder(pl.loggers.Logger):
        name, version = "recorder", 0

        def __init__(self) -> None:
            super().__init__()
            self.audio, self.images = [], []
            parent = self

            class Experiment:
                def add_audio(self, tag, wav, step, sample_rate):
                    parent.audio.append((tag, wav.shape, sample_rate))

                def add_image(self, tag, image, step, dataformats):
                    parent.images.append((tag, image.shape))

            self._experiment = Experiment()

        @property
        def experiment(self):
            return self._experiment

        def log_metrics(self, metrics, step=None) -> None:
            pass

        def log_hyperparams(self, params, *args, **kwargs) -> None:
            pass

    torch.manual_seed(0)
    recorder = Recorder()
    task = tiny_task(encoder, validation_f0_rmse=True, validation_speaker_model="resemblyzer")
    run = trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=recorder)
    run.fit(task, data)
    metrics = run.callback_metrics
    for key in ("val/mel_l1", "val/reconstruction_mel_l1", "val/resynthesis_mel_l1", "val/f0_rmse"):
        assert math.isfinite(float(metrics[key])), key
    for key in ("val/resynthesis_similarity", "val/conversion_similarity"):
        assert -1 <= float(metrics[key]) <= 1, key
    tags = {tag for tag, _, _ in recorder.audio}
    assert {"val/0/reconstructed", "val/0/resynthesized", "val/0/converted", "val/0/target"} <= tags
    assert all(rate == 16000 for _, _, rate in recorder.audio)
    assert {"val/0/mel_reconstructed", "val/1/mel_converted"} <= {tag for tag, _ in recorder.images}


# ------------------------------------------------------------------------------ fine-tuning, DDP, recipes


def test_finetune_from_an_official_checkpoint_through_the_registry(tmp_path, loopback_hub, monkeypatch, data):
    torch.manual_seed(3)
    released = HierSpeech2(**TINY)
    with torch.no_grad():
        for parameter in released.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    path = tmp_path / "G_tiny.pth"
    torch.save({"model": released.official_state_dict(), "iteration": 1}, path)  # the authors' layout
    data_bytes = path.read_bytes()
    loopback_hub.add_file("someone/tiny-backbone", "G_tiny.pth", path)
    config = {
        key: [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, tuple) else value
        for key, value in TINY.items()
    }
    registry = {
        "schema_version": 1,
        "models": {
            "tiny-backbone": {
                "family": "backbone", "description": "tiny test backbone", "license": "MIT",
                "format": "official",
                "source": {"repo_id": "someone/tiny-backbone", "repo_type": "model", "revision": "main",
                           "filename": "G_tiny.pth"},
                "sha256": hashlib.sha256(data_bytes).hexdigest(), "size": len(data_bytes), "config": config,
            }
        },
    }  # fmt: skip
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(yaml.safe_dump(registry))
    monkeypatch.setenv("HIERSPEECH2_REGISTRY", str(registry_file))

    task = tiny_task(init_from="tiny-backbone", freeze=("enc_p_l",))
    expected, loaded = released.state_dict(), task.model.state_dict()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    trainer(max_steps=2).fit(task, data)
    trained = task.model.state_dict()
    moved = [key for key, value in expected.items() if not torch.equal(trained[key], value)]
    assert moved and not any(key.startswith("perturbed_prior_encoder.") for key in moved)
    with pytest.raises(CheckpointError, match="do not fit"):
        tiny_task(model=HierSpeech2(**(TINY | {"inter_channels": 16})), init_from="tiny-backbone")


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, shared_cache) -> None:
    extra = tmp_path / "extra.yaml"
    callback = {"class_path": "rank_weights.SaveRankWeights", "init_args": {"out_dir": str(tmp_path)}}
    extra.write_text(yaml.safe_dump({"trainer": {"callbacks": [callback]}}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [
            sys.executable, "-m", "hierspeech2.training_cli", "fit",
            "-c", str(RECIPES / "tiny" / "hierspeech2.yaml"), "-c", str(extra), *recipe_args(shared_cache),
            "--model.init_args.semantic_encoder", "null", "--model.init_args.perturbation", "null",
            "--data.init_args.loader.batch_size", "1", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.max_steps", "2", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0",
            "--trainer.enable_checkpointing", "false", "--trainer.logger", "false",
        ],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["steps"] for r in ranks] == [2, 2]
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key


def test_print_config_resolves_the_backbone_recipes(capsys) -> None:
    for recipe in (
        RECIPES / "hierspeech2.yaml",
        RECIPES / "hierspeech2_finetune.yaml",
        RECIPES / "tiny" / "hierspeech2.yaml",
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["fit", "-c", str(recipe), "--print_config"])
        assert exit_info.value.code in (0, None), recipe
        config = yaml.safe_load(capsys.readouterr().out)
        assert config["model"]["class_path"] == "hierspeech2.tasks.backbone.HierSpeech2Task"
        assert config["data"]["class_path"] == "hierspeech2.data.datamodules.BackboneDataModule"
    full = yaml.safe_load((RECIPES / "hierspeech2.yaml").read_text())["model"]["init_args"]
    assert full["optimizer"] == {
        "learning_rate": 1e-4, "betas": [0.8, 0.99], "eps": 1e-9, "weight_decay": 0.01, "lr_decay": 0.999,
    }  # fmt: skip
    assert (full["mel_weight"], full["kl_weight"], full["bidirectional_kl_weight"], full["f0_weight"]) == (
        45,
        1,
        0.5,
        45,
    )


# ------------------------------------------------------------------------------ full size


# Parameters that legitimately receive no gradient in a training step: none. (The null style only
# gets one on rows dropped for classifier-free guidance; the step below drops every row. The
# coupling layers' output convolutions start at zero, as in VITS, so on the very first step the
# layers before them get zero gradients, and so does everything their adaLN-Zero gates multiply;
# the test starts those layers from small random values.)
NO_GRADIENT: set[str] = set()


def test_full_size_step_gives_every_parameter_a_gradient() -> None:
    torch.manual_seed(0)
    task = HierSpeech2Task(semantic_encoder=None, uncond_probability=1.0, window_frames=8)
    assert 96e6 < sum(p.numel() for p in task.model.parameters()) < 98e6  # the released 97M
    with torch.no_grad():
        for name, parameter in task.model.named_parameters():
            if "flow." in name and (".post." in name or ".adaLN_modulation." in name):
                assert not parameter.any(), name  # zero-initialised
                parameter.normal_(0.0, 1e-3)
    frames = 16
    time = torch.arange(frames * 320) / 16000
    audio = (0.3 * torch.sin(2 * math.pi * 150 * time))[None, None]
    batch = BackboneBatch(
        audio=audio,
        linear=LinearSpectrogram()(audio[:, 0]),
        mel=LogMelSpectrogram()(audio[:, 0]),
        semantic=torch.randn(1, 1024, frames),
        f0=torch.full((1, 1, 4 * frames), 150.0),
        frame_lengths=torch.tensor([frames]),
    )
    fake, real, extra = task.generate(batch)
    task.discriminator_loss(real, fake).backward()
    terms = task.reconstruction_terms(batch, fake, real, extra) | task.adversarial_terms(real, fake)
    assert all(torch.isfinite(value) for value in terms.values())
    torch.stack(list(terms.values())).sum().backward()
    missing = {
        name for name, p in task.model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    }
    assert missing == NO_GRADIENT
    assert all(p.grad is not None for p in task.discriminator.parameters())
