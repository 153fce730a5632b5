"""Inference speed of hierspeech2, stage by stage, optionally side by side with the official code.

Usage::

    python benchmarks/inference.py                      # 3, 12 and 60 s inputs, 3 repetitions
    python benchmarks/inference.py --quick              # 3 s only, 2 repetitions (about a minute)
    python benchmarks/inference.py --compare --official PATH/TO/HierSpeechpp
    python benchmarks/inference.py --stages sr48k vc48k --lengths 12 --threads 1 --json out.json

Stages (input length L seconds of 16 kHz speech; the voice prompt is 3 s):

=========  ======================================================================
f0         YAAPT F0 of the source (the official extractor, ``variant="inference"``)
mms        MMS-300m semantic features (ours runs the 7 layers it uses, official all 24)
backbone   HierSpeech2 voice conversion from features + F0 + prompt mel → 16 kHz
sr24k      SpeechSR 16 → 24 kHz (released weights)
sr48k      SpeechSR 16 → 48 kHz (released weights)
vc48k      voice conversion end to end: waveforms → F0, MMS, prompt mel, backbone, SpeechSR-48k
tts48k     TTS end to end from phoneme ids (≈ L s of speech): prompt mel, TextToVec, backbone, SR-48k
=========  ======================================================================

Protocol: per stage and length, one warm-up call of each implementation (it also counts the
FLOPs with ``torch.utils.flop_counter``), then ``--reps`` timed calls, official and ours
alternating so that both see the same machine load; the speed-up is the median of the paired
ratios. Times are medians with the min–max spread. RTF = compute seconds per second of audio
(input length; TTS: output length). GFLOP/s is the counted work (matmuls, convolutions,
attention; elementwise ops and oneDNN's int8 kernels are not counted, e.g. our polyphase
anti-aliasing filters, so ``--int8`` rows read low) over the
median time, next to a measured fp32 matmul peak (2048², same threads). Peak RSS is the
process's high-water mark during the stage's calls (reset before each call via
``/proc/self/clear_refs``), models included.

Weights: the backbone and TTV get the deterministic full-size weights of
``../shared/parity/fill.py`` (random ones when it is absent), SpeechSR the released weights
packaged with hierspeech2, MMS random weights of the mms-300m architecture (``--mms DIR`` for a
local transformers checkpoint); the official models get the same weights. Ours runs its
default fast path (fused weight norm, polyphase alias-free activations, chunked time-major AMP
stacks, 7 MMS layers); ``--dtype bfloat16`` runs ours under ``torch.autocast``, ``--int8``
quantises MMS and the backbone as the CLI's ``--int8`` does
(``hierspeech2.nn.quantization.int8_inference``), ``--f0 swift|praat`` swaps YAAPT in the f0 and
vc48k stages; ``--quality`` measures what that costs: the log-mel L1 of the VC and TTS outputs
against the fp32 + YAAPT default (same seed), next to the L1 between two fp32 sampler seeds.

The official code (GitHub ``sh-lee-prml/HierSpeechpp``) is imported from ``--official`` in this
process; its ``.cuda()`` calls are patched at run time and timm's ``Attention`` (its one use of
timm) is provided in memory. Nothing of it is copied into this project.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import platform
import resource
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_RATE = 16_000
PROMPT_SECONDS = 3.0
STAGES = ("f0", "mms", "backbone", "sr24k", "sr48k", "vc48k", "tts48k")
MMS_LAYER = 7  # the released models read hidden state 7 of MMS-300m
# facebook/mms-300m's architecture (its config.json), so that timing needs no download.
MMS_300M = {
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
    "conv_dim": (512,) * 7, "conv_stride": (5, 2, 2, 2, 2, 2, 2), "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_bias": True, "num_conv_pos_embeddings": 128, "num_conv_pos_embedding_groups": 16,
    "do_stable_layer_norm": True, "feat_extract_norm": "layer", "feat_extract_activation": "gelu",
    "hidden_act": "gelu", "layer_norm_eps": 1e-5,
}  # fmt: skip
# The released "hierspeechpp_eng_kor" backbone configuration, as the official constructor takes it.
OFFICIAL_BACKBONE = {
    "inter_channels": 192, "hidden_channels": 192, "filter_channels": 768, "n_heads": 2, "n_layers": 6,
    "kernel_size": 3, "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [4, 5, 4, 2, 2],
    "upsample_initial_channel": 512, "upsample_kernel_sizes": [8, 11, 8, 4, 4], "gin_channels": 256,
    "prosody_size": 20, "uncond_ratio": 0.1, "cfg": True,
}  # fmt: skip
SPEECHSR_CONFIG = {
    "resblock": "0", "resblock_kernel_sizes": [3, 7, 11], "resblock_dilation_sizes": [[1, 3, 5]] * 3,
    "upsample_rates": [3], "upsample_initial_channel": 32, "upsample_kernel_sizes": [3],
}  # fmt: skip
PITCH_FLOOR_HZ = 55.0  # official TTS chain
PEAK = 0.999


# --------------------------------------------------------------------------------------------- #
# measurement helpers


def matmul_peak_gflops(device: torch.device, reps: int = 5) -> float:
    """Median fp32 GFLOP/s of a 2048 × 2048 matmul on ``device`` with the current threads."""
    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    times = [_timed(lambda: a @ b, device) for _ in range(reps + 1)][1:]
    return 2 * 2048**3 / statistics.median(times) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def count_flops(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(FLOPs that ``torch.utils.flop_counter`` sees in one call, the call's result).

    The counter sees only its own thread, so the call runs its chunks there (``sequential_chunks``).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from hierspeech2.nn.chunk_threads import sequential_chunks

    with FlopCounterMode(display=False) as counter, sequential_chunks():
        result = fn()
    return float(counter.get_total_flops()), result


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 / 1024 if platform.system() == "Linux" else 1 / 2**20  # KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _measured(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(seconds, peak RSS MiB during the call)."""
    _reset_peak_rss()
    seconds = _timed(fn, device)
    return seconds, _peak_rss_mib()


# --------------------------------------------------------------------------------------------- #
# inputs


def _read_wav(path: Path) -> torch.Tensor:
    from hierspeech2.audio import load_audio

    return load_audio(path, SAMPLE_RATE)


def speech(seconds: float, audio_dir: Path, offset: int = 0) -> torch.Tensor:
    """``seconds`` of 16 kHz speech [N]: the shared LibriTTS utterances end to end (a synthetic voice
    without them)."""
    n = round(seconds * SAMPLE_RATE)
    files = sorted(audio_dir.glob("*.wav")) if audio_dir.is_dir() else []
    if files:
        clips = [_read_wav(f) for f in files[offset:] + files[:offset]]
        joined = torch.cat(clips)
        return joined.repeat(math.ceil(n / joined.numel()))[:n].contiguous()
    t = torch.arange(n) / SAMPLE_RATE
    f0 = 120 + 20 * torch.sin(2 * math.pi * 0.7 * t + offset)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / SAMPLE_RATE
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 20)) * (torch.sin(2 * math.pi * 3 * t) > -0.3)
    return (0.1 * voiced + 0.003 * torch.randn(n, generator=torch.Generator().manual_seed(offset))).float()


def tokens_for(seconds: float, frames_per_token: float, base: torch.Tensor) -> torch.Tensor:
    """Phoneme ids [1, L] for about ``seconds`` of speech: ``base`` repeated."""
    count = max(8, round(seconds * SAMPLE_RATE / 320 / frames_per_token))
    return base.reshape(-1).repeat(math.ceil(count / base.numel()))[:count].reshape(1, -1)


# --------------------------------------------------------------------------------------------- #
# the official implementation, imported in process


class _TimmAttention(nn.Module):
    """timm's ``vision_transformer.Attention`` as the official blocks use it (fused qkv, proj)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, **_: Any) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


@contextlib.contextmanager
def _no_cuda_calls(device: torch.device) -> Iterator[None]:
    """The official code calls ``.cuda()`` unconditionally; send those tensors to ``device`` instead."""
    original = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self.to(device)  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = original  # type: ignore[method-assign]


def import_official(path: Path) -> types.SimpleNamespace:
    """The official modules, imported from a checkout of sh-lee-prml/HierSpeechpp (nothing is copied)."""
    if not (path / "hierspeechpp_speechsynthesizer.py").is_file():
        raise SystemExit(
            f"--official {path}: not a HierSpeechpp checkout (no hierspeechpp_speechsynthesizer.py)"
        )
    # transformers probes for timm when imported; let it see the real (absent) package first.
    import transformers  # noqa: F401
    from transformers import Wav2Vec2ForPreTraining  # noqa: F401

    if "timm" not in sys.modules:
        for name in ("timm", "timm.models", "timm.models.vision_transformer"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["timm.models.vision_transformer"].Attention = _TimmAttention  # type: ignore[attr-defined]
    sys.path.insert(0, str(path))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation warnings of the 2023 code (weight_norm, amp)
        return types.SimpleNamespace(
            synthesizer=importlib.import_module("hierspeechpp_speechsynthesizer"),
            ttv=importlib.import_module("ttv_v1.t2w2v_transformer"),
            sr24=importlib.import_module("speechsr24k.speechsr"),
            sr48=importlib.import_module("speechsr48k.speechsr"),
            mels=importlib.import_module("Mels_preprocess"),
            path=path,
        )


def official_yaapt(wav: np.ndarray) -> np.ndarray:
    """The official ``get_yaapt_f0`` (inference_vc.py) on a [1, N] array → [1, 1, frames]."""
    import amfm_decompy.basic_tools as basic
    import amfm_decompy.pYAAPT as pyaapt

    to_pad = int(20.0 / 1000 * SAMPLE_RATE) // 2
    rows = []
    for y in wav.astype(np.float64):
        signal = basic.SignalObj(
            np.pad(y.squeeze(), (to_pad, to_pad), "constant", constant_values=0), SAMPLE_RATE
        )
        with np.errstate(all="ignore"):
            pitch = pyaapt.yaapt(
                signal,
                frame_length=20.0,
                frame_space=5.0,
                nccf_thresh1=0.25,
                tda_frame_length=25.0,
                f0_max=1100,
            )
        rows.append(pitch.samp_values[None, None, :])
    return np.vstack(rows)


# --------------------------------------------------------------------------------------------- #
# models


@dataclass
class Models:
    backbone: Any
    ttv: Any
    sr24: Any
    sr48: Any
    mms: Any
    extra: dict[str, Any] = field(default_factory=dict)


def _fill(model: str, parity_dir: Path) -> dict[str, torch.Tensor] | None:
    if not (parity_dir / "fill.py").is_file():
        return None
    spec = importlib.util.spec_from_file_location("_parity_fill", parity_dir / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.official_state_dict(model, str(parity_dir))


def build_models(
    args: argparse.Namespace, official: types.SimpleNamespace | None
) -> tuple[Models, Models | None]:
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model

    from hierspeech2.models import HierSpeech2, SpeechSR, TextToVec
    from hierspeech2.nn.inference import fuse_weight_norm, use_fast_activations
    from hierspeech2.ssl import SemanticEncoder

    device = torch.device(args.device)
    backbone_state, ttv_state = _fill("backbone", args.parity_dir), _fill("ttv", args.parity_dir)
    backbone = HierSpeech2.from_official(backbone_state) if backbone_state else HierSpeech2().eval()
    ttv = TextToVec.from_official(ttv_state) if ttv_state else TextToVec().eval()
    sr24, sr48 = SpeechSR.from_packaged(24000), SpeechSR.from_packaged(48000)
    backbone_state = backbone_state or backbone.official_state_dict()
    ttv_state = ttv_state or ttv.official_state_dict()
    sr_states = {24: sr24.official_state_dict(), 48: sr48.official_state_dict()}

    torch.manual_seed(0)
    if args.mms:
        full = Wav2Vec2ForPreTraining.from_pretrained(str(args.mms)) if official else None
        mms = SemanticEncoder.from_pretrained(args.mms, layer=MMS_LAYER)
    else:
        config = Wav2Vec2Config(**MMS_300M)
        full = Wav2Vec2ForPreTraining(config).eval() if official else None
        truncated = Wav2Vec2Model(Wav2Vec2Config(**{**MMS_300M, "num_hidden_layers": MMS_LAYER}))
        if full is not None:  # same random weights in both, so their outputs can be compared
            truncated.load_state_dict(full.wav2vec2.state_dict(), strict=False)
        mms = SemanticEncoder(truncated, layer=MMS_LAYER)

    for model in (backbone, ttv, sr24, sr48):
        fuse_weight_norm(model)
    # No parameter needs a gradient: besides, FlopCounterMode's module tracker fails on
    # weight-norm parametrizations whose inputs require grad under inference mode.
    ours = Models(*(m.to(device).eval().requires_grad_(False) for m in (backbone, ttv, sr24, sr48, mms)))
    for model in (backbone, ttv, sr24, sr48):
        use_fast_activations(model)  # as the pipelines do, for the device it now sits on
    if official is None:
        return ours, None

    import json as _json

    with _no_cuda_calls(device):
        off_backbone = official.synthesizer.SynthesizerTrn(641, 192, **OFFICIAL_BACKBONE)
        off_backbone.load_state_dict(backbone_state, strict=True)
        ttv_config = _json.loads((official.path / "ttv_v1" / "config.json").read_text())["model"]
        off_ttv = official.ttv.SynthesizerTrn(80, 192000 // 320, **ttv_config)
        off_ttv.load_state_dict(ttv_state, strict=True)
        off_sr24 = official.sr24.SynthesizerTrn(100, 9600 // 240, **SPEECHSR_CONFIG)
        off_sr24.load_state_dict(sr_states[24], strict=True)
        off_sr48 = official.sr48.SynthesizerTrn(128, 9600 // 320, **SPEECHSR_CONFIG)
        off_sr48.load_state_dict(sr_states[48], strict=True)
        off_mms = _official_wav2vec2(official, full)
        mel = official.mels.MelSpectrogramFixed(
            sample_rate=SAMPLE_RATE, n_fft=1280, win_length=1280, hop_length=320, f_min=0, f_max=8000,
            n_mels=80, window_fn=torch.hann_window,
        )  # fmt: skip
    theirs = Models(
        *(
            m.to(device).eval().requires_grad_(False)
            for m in (off_backbone, off_ttv, off_sr24, off_sr48, off_mms)
        )
    )
    theirs.extra["mel"] = mel.to(device)
    return ours, theirs


def _official_wav2vec2(official: types.SimpleNamespace, full: nn.Module) -> nn.Module:
    """The official ``Wav2vec2`` wrapper around ``full`` (its constructor would download mms-300m)."""
    wrapper = official.synthesizer.Wav2vec2.__new__(official.synthesizer.Wav2vec2)
    nn.Module.__init__(wrapper)
    wrapper.wav2vec2 = full.eval()
    wrapper.feature_layer = MMS_LAYER
    return wrapper


# --------------------------------------------------------------------------------------------- #
# stage callables: (ours, official) for one input length


@dataclass
class Inputs:
    source: torch.Tensor  # [N] 16 kHz
    prompt: torch.Tensor  # [P] 16 kHz
    semantic: torch.Tensor  # [1, 1024, T]
    log_f0: torch.Tensor  # [1, 1, 4T]
    prompt_mel: torch.Tensor  # [2, 80, Tm]
    tokens: torch.Tensor  # [1, L]


def prepare_inputs(seconds: float, args: argparse.Namespace, ours: Models, frames_per_token: float) -> Inputs:
    from hierspeech2.audio import LogMelSpectrogram, pad_to_multiple

    source = pad_to_multiple(speech(seconds, args.audio_dir, offset=0), 1280)
    prompt = speech(PROMPT_SECONDS, args.audio_dir, offset=1)
    frames = source.numel() // 320
    generator = torch.Generator().manual_seed(1)
    semantic = torch.randn(1, 1024, frames, generator=generator)
    log_f0 = torch.log1p(120 + 30 * torch.rand(1, 1, 4 * frames, generator=generator))
    mel = LogMelSpectrogram()(torch.stack([prompt, prompt]))
    return Inputs(
        source, prompt, semantic, log_f0, mel, tokens_for(seconds, frames_per_token, args.base_tokens)
    )


def stage_functions(
    stage: str, x: Inputs, ours: Models, theirs: Models | None, args: argparse.Namespace
) -> tuple[Callable[[], Any], Callable[[], Any] | None, float]:
    """(ours, official or None, seconds of audio the stage produces) for ``stage`` on inputs ``x``."""
    from hierspeech2.pipelines import TextToSpeech, VoiceConversion
    from hierspeech2.pitch import f0_extractor

    device = torch.device(args.device)
    seconds = x.source.numel() / SAMPLE_RATE
    lengths = torch.tensor([x.semantic.shape[-1]], device=device)
    mel_lengths = torch.tensor([x.prompt_mel.shape[-1]] * 2, device=device)
    semantic, log_f0, prompt_mel = (t.to(device) for t in (x.semantic, x.log_f0, x.prompt_mel))
    source = x.source.to(device)
    wav = source.view(1, 1, -1)
    ours_fn: Callable[[], Any]
    theirs_fn: Callable[[], Any] | None = None

    if stage == "f0":
        ours_fn = lambda: f0_extractor(args.f0, "inference")(x.source)
        theirs_fn = lambda: official_yaapt(x.source.numpy()[None])
    elif stage == "mms":
        ours_fn = lambda: ours.mms(source.unsqueeze(0))
        if theirs:
            theirs_fn = lambda: theirs.mms(F.pad(wav, (40, 40), mode="reflect"))
    elif stage == "backbone":
        ours_fn = lambda: ours.backbone.voice_conversion(semantic, lengths, prompt_mel, mel_lengths, log_f0)
        if theirs:
            theirs_fn = lambda: theirs.backbone.voice_conversion_noise_control(
                semantic, lengths, prompt_mel, mel_lengths, log_f0, noise_scale=0.333
            )
    elif stage in ("sr24k", "sr48k"):
        mine, other = (
            (ours.sr24, theirs and theirs.sr24) if stage == "sr24k" else (ours.sr48, theirs and theirs.sr48)
        )
        ours_fn = lambda: mine(wav)
        theirs_fn = (lambda: other(wav)) if other is not None else None
    elif stage == "vc48k":
        pipeline = VoiceConversion(ours.backbone, ours.mms, ours.sr48, f0_extractor=args.f0)
        ours_fn = lambda: pipeline(
            x.source, x.prompt, source_rate=SAMPLE_RATE, target_rate=SAMPLE_RATE, seed=0
        )
        if theirs:
            theirs_fn = lambda: official_vc(theirs, x.source, x.prompt, device, noise_scale=0.333)
        seconds = x.source.numel() / SAMPLE_RATE
    elif stage == "tts48k":
        pipeline = TextToSpeech(ours.ttv, ours.backbone, ours.sr48)

        def ours_fn() -> torch.Tensor:
            from hierspeech2.audio import LogMelSpectrogram

            mel = LogMelSpectrogram().to(device)(torch.stack([x.prompt, x.prompt]).to(device))
            torch.manual_seed(0)
            return pipeline.synthesize_from_tokens(x.tokens, mel)

        if theirs:
            theirs_fn = lambda: official_tts(theirs, x.tokens, x.prompt, device)
        seconds = float("nan")  # known after the warm-up call
    else:
        raise ValueError(stage)
    return ours_fn, theirs_fn, seconds


@torch.inference_mode()
def official_vc(theirs: Models, source: torch.Tensor, prompt: torch.Tensor, device: torch.device,
                noise_scale: float = 0.333) -> torch.Tensor:  # fmt: skip
    """The official VC script's steps (inference_vc.py ``VC``) on in-memory 16 kHz waveforms → 48 kHz."""
    torch.manual_seed(0)
    source = source.view(1, -1)
    pad = (source.shape[-1] // 1280 + 1) * 1280 - source.shape[-1]
    source = F.pad(source, (0, pad))
    f0 = official_yaapt(source.numpy())
    voiced = f0 != 0
    f0[voiced] = (f0[voiced] - f0[voiced].mean()) / f0[voiced].std()
    w2v = theirs.mms(F.pad(source, (40, 40), "reflect").to(device))
    lengths = torch.LongTensor([w2v.size(2)]).to(device)
    target = prompt.view(1, -1)
    t_f0 = official_yaapt(target.numpy())
    t_voiced = t_f0 != 0
    f0[voiced] = ((f0[voiced] * t_f0[t_voiced].std()) + t_f0[t_voiced].mean()).clip(min=0)
    log_f0 = torch.log(torch.FloatTensor(f0 + 1)).to(device)
    target = torch.cat([target, target], dim=0).to(device)
    mel = theirs.extra["mel"](target)
    mel_lengths = torch.LongTensor([mel.size(2)] * 2).to(device)
    audio = theirs.backbone.voice_conversion_noise_control(
        w2v, lengths, mel, mel_lengths, log_f0, noise_scale=noise_scale
    )
    audio = theirs.sr48(audio).squeeze()
    return audio / audio.abs().max() * PEAK


@torch.inference_mode()
def official_tts(theirs: Models, tokens: torch.Tensor, prompt: torch.Tensor, device: torch.device,
                 noise: tuple[float, float, float] = (0.333, 0.333, 1.0)) -> torch.Tensor:  # fmt: skip
    """The official TTS script's steps (inference.py ``tts``) from phoneme ids → 48 kHz."""
    torch.manual_seed(0)
    tokens = tokens.to(device)
    token_lengths = torch.LongTensor([tokens.size(-1)]).to(device)
    audio = torch.cat([prompt.view(1, -1)] * 2, dim=0).to(device)
    mel = theirs.extra["mel"](audio)
    mel_lengths = torch.LongTensor([mel.size(2)] * 2).to(device)
    w2v, pitch = theirs.ttv.infer_noise_control(
        tokens, token_lengths, mel, mel_lengths, noise_scale=noise[0], noise_scale_w=noise[2]
    )
    lengths = torch.LongTensor([w2v.size(2)]).to(device)
    pitch[pitch < torch.log(torch.tensor([PITCH_FLOOR_HZ], device=device))] = 0
    out = theirs.backbone.voice_conversion_noise_control(
        w2v, lengths, mel, mel_lengths, pitch, noise_scale=noise[1]
    )
    out = theirs.sr48(out).squeeze()
    return out / out.abs().max() * PEAK


# --------------------------------------------------------------------------------------------- #
# the run


@dataclass
class Row:
    stage: str
    input_seconds: float
    audio_seconds: float
    ours: list[float]
    ours_flops: float
    ours_peak_mib: float
    official: list[float] = field(default_factory=list)
    official_flops: float = float("nan")
    official_peak_mib: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _output_seconds(result: Any) -> float:
    audio = result[0] if isinstance(result, tuple) else result
    return audio.numel() / 48_000


def run_stage(stage: str, seconds: float, x: Inputs, ours: Models, theirs: Models | None,
              args: argparse.Namespace) -> Row:  # fmt: skip
    device = torch.device(args.device)
    ours_fn, theirs_fn, audio_seconds = stage_functions(stage, x, ours, theirs, args)
    compare = theirs_fn is not None and seconds <= args.compare_max_seconds
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.dtype == "bfloat16"
        else contextlib.nullcontext()
    )

    def ours_call() -> Any:
        with torch.inference_mode(), autocast:
            return ours_fn()

    def theirs_call() -> Any:
        with torch.inference_mode():
            return theirs_fn()

    torch.manual_seed(0)
    ours_flops, result = count_flops(ours_call)  # doubles as the warm-up call
    if stage == "tts48k":
        audio_seconds = _output_seconds(result)
    row = Row(stage, seconds, audio_seconds, [], ours_flops, 0.0)
    if compare:
        torch.manual_seed(0)
        row.official_flops, _ = count_flops(theirs_call)
        row.official_peak_mib = 0.0
    for _ in range(args.reps):
        if compare:
            t, peak = _measured(theirs_call, device)
            row.official.append(t)
            row.official_peak_mib = max(row.official_peak_mib, peak)
        t, peak = _measured(ours_call, device)
        row.ours.append(t)
        row.ours_peak_mib = max(row.ours_peak_mib, peak)
    return row


def _fmt_time(times: list[float]) -> str:
    if not times:
        return "—"
    return f"{statistics.median(times):7.3f} [{min(times):.3f}–{max(times):.3f}]"


def print_table(rows: list[Row], peak: float) -> None:
    header = (
        f"{'stage':9} {'input':>6} {'ours s (median [min–max])':>27} {'RTF':>6} {'GFLOP':>7} {'GFLOP/s':>8} "
        f"{'%peak':>6} {'RSS MiB':>8} │ {'official s':>27} {'RTF':>6} {'speed-up':>9}"
    )
    print(header)
    print("─" * len(header))
    for row in rows:
        med = statistics.median(row.ours)
        rate = row.ours_flops / med / 1e9
        line = (
            f"{row.stage:9} {row.input_seconds:5.0f}s {_fmt_time(row.ours):>27} "
            f"{med / row.audio_seconds:6.3f} "
            f"{row.ours_flops / 1e9:7.1f} {rate:8.1f} {100 * rate / peak:5.0f}% {row.ours_peak_mib:8.0f} │ "
        )
        if row.official:
            off = statistics.median(row.official)
            ratios = [o / s for o, s in zip(row.official, row.ours)]
            line += (
                f"{_fmt_time(row.official):>27} {off / row.audio_seconds:6.3f} "
                f"{statistics.median(ratios):8.2f}×"
            )
        else:
            line += f"{'—':>27} {'—':>6} {'—':>9}"
        print(line)


def quality(ours: Models, fp32: Models, args: argparse.Namespace, seconds: float = 12.0) -> dict[str, float]:
    """Log-mel L1 of the benchmarked configuration's VC and TTS outputs vs the fp32/YAAPT default
    (same seed), next to the L1 between two fp32 sampler seeds (the model's own sampling noise)."""
    from hierspeech2.audio import LogMelSpectrogram, resample
    from hierspeech2.pipelines import TextToSpeech, VoiceConversion

    source = speech(seconds, args.audio_dir, 0)
    prompt = speech(PROMPT_SECONDS, args.audio_dir, 1)
    tokens = tokens_for(seconds, args.frames_per_token, args.base_tokens)
    mel = LogMelSpectrogram()
    prompt_mel = mel(torch.stack([prompt, prompt]))

    def log_mel(task: str, models: Models, seed: int, low: bool) -> torch.Tensor:
        context = (
            torch.autocast(args.device, dtype=torch.bfloat16)
            if low and args.dtype == "bfloat16"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), context:
            if task == "vc":
                f0 = args.f0 if low else "yaapt"
                pipeline = VoiceConversion(models.backbone, models.mms, models.sr48, f0_extractor=f0)
                audio, rate = pipeline(
                    source, prompt, source_rate=SAMPLE_RATE, target_rate=SAMPLE_RATE, seed=seed
                )
            else:
                torch.manual_seed(seed)
                tts = TextToSpeech(models.ttv, models.backbone, models.sr48)
                audio, rate = tts.synthesize_from_tokens(tokens, prompt_mel), 48_000
        return mel(resample(audio.float(), rate, SAMPLE_RATE))

    result: dict[str, float] = {"seconds": seconds}
    for task in ("vc", "tts"):
        reference = log_mel(task, fp32, 0, low=False)
        other_seed = log_mel(task, fp32, 1, low=False)
        low = log_mel(task, ours, 0, low=True)
        frames = min(reference.shape[-1], low.shape[-1], other_seed.shape[-1])
        result[f"{task}_l1_config_vs_fp32"] = (
            (low[..., :frames] - reference[..., :frames]).abs().mean().item()
        )
        result[f"{task}_l1_fp32_seed0_vs_seed1"] = (
            (other_seed[..., :frames] - reference[..., :frames]).abs().mean().item()
        )
    return result


def parity(ours: Models, theirs: Models, args: argparse.Namespace, seconds: float = 12.0) -> dict[str, float]:
    """Max |ours − official| of the VC and TTS chains with every noise at 0 (same weights and inputs)."""
    from hierspeech2.audio import LogMelSpectrogram
    from hierspeech2.pipelines import TextToSpeech, VoiceConversion

    device = torch.device(args.device)
    source = speech(seconds, args.audio_dir, 0)
    prompt = speech(PROMPT_SECONDS, args.audio_dir, 1)
    with torch.inference_mode():
        vc = VoiceConversion(ours.backbone, ours.mms, ours.sr48, noise_scale=0.0)
        mine, _ = vc(source, prompt, source_rate=SAMPLE_RATE, target_rate=SAMPLE_RATE)
        other = official_vc(theirs, source, prompt, device, noise_scale=0.0).cpu()
        n = min(mine.numel(), other.numel())
        result = {
            "vc48k_max_abs": (mine[:n] - other[:n]).abs().max().item(),
            "vc48k_len": [mine.numel(), other.numel()],
        }
        tokens = tokens_for(seconds, args.frames_per_token, args.base_tokens)
        mel = LogMelSpectrogram().to(device)(torch.stack([prompt, prompt]).to(device))
        tts = TextToSpeech(ours.ttv, ours.backbone, ours.sr48)
        mine = tts.synthesize_from_tokens(
            tokens, mel, noise_scale_ttv=0.0, noise_scale_vc=0.0, noise_scale_w=0.0
        )
        other = official_tts(theirs, tokens, prompt, device, noise=(0.0, 0.0, 0.0)).cpu()
        n = min(mine.numel(), other.numel())
        result.update(
            tts48k_max_abs=(mine[:n] - other[:n]).abs().max().item(), tts48k_len=[mine.numel(), other.numel()]
        )
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--lengths", nargs="+", type=float, default=[3.0, 12.0, 60.0], help="input seconds")
    parser.add_argument(
        "--reps", type=int, default=3, help="timed calls per stage and length (after one warm-up)"
    )
    parser.add_argument("--quick", action="store_true", help="3 s inputs, 2 repetitions")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: run ours under torch.autocast")  # fmt: skip
    parser.add_argument("--int8", action="store_true",
                        help="ours with hierspeech2.nn.quantization.quantize_int8 "
                             "(the CLI's --int8; CPU)")  # fmt: skip
    parser.add_argument("--f0", choices=("yaapt", "swift", "praat"), default="yaapt",
                        help="F0 extractor of ours in the f0 and vc48k stages "
                             "(default: yaapt, as official)")  # fmt: skip
    parser.add_argument("--compare", nargs="?", const=True, default=False, metavar="OFFICIAL",
                        help="also time the official implementation "
                             "(path here or with --official)")  # fmt: skip
    parser.add_argument("--official", type=Path, default=None, help="checkout of sh-lee-prml/HierSpeechpp")
    parser.add_argument("--compare-max-seconds", type=float, default=12.0,
                        help="time the official code only up to this input length "
                             "(it is slow); default 12")  # fmt: skip
    parser.add_argument(
        "--check", action="store_true", help="with --compare: max |ours − official| at noise 0"
    )
    parser.add_argument(
        "--quality", action="store_true", help="low-precision error vs fp32 and sampler noise"
    )
    parser.add_argument("--mms", type=Path, default=None, help="local transformers mms-300m checkpoint")
    parser.add_argument("--parity-dir", type=Path, default=SHARED / "parity")
    parser.add_argument("--audio-dir", type=Path, default=SHARED / "audio")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.reps = [3.0], 2
    if args.compare and args.compare is not True:
        args.official = Path(args.compare)
    if args.compare and args.official is None:
        parser.error("--compare needs the official checkout: --compare PATH or --official PATH")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    official = import_official(args.official.resolve()) if args.compare else None
    ours, theirs = build_models(args, official)
    fp32 = ours
    if args.int8:
        from hierspeech2.nn.quantization import int8_inference

        ours = Models(**{role: getattr(fp32, role) for role in ("backbone", "ttv", "sr24", "sr48", "mms")})
        ours.mms, ours.backbone = int8_inference(fp32.mms, fp32.backbone, copy=True)

    from safetensors.torch import load_file

    cases = args.parity_dir / "cases.safetensors"
    args.base_tokens = (
        load_file(str(cases))["a.ttv.tokens"] if cases.is_file() else torch.randint(1, 178, (1, 300))
    )
    with torch.inference_mode():  # frames per token of this TTV at the benchmark's settings, for the lengths
        torch.manual_seed(0)
        probe = args.base_tokens.reshape(1, -1)[:, :200]
        mel = prepare_inputs(PROMPT_SECONDS, args, ours, 1.0).prompt_mel
        semantic, _ = ours.ttv.infer(
            probe, torch.tensor([probe.shape[-1]]), mel, torch.tensor([mel.shape[-1]] * 2)
        )
        args.frames_per_token = semantic.shape[-1] / probe.shape[-1]

    peak = matmul_peak_gflops(device)
    print(f"hierspeech2 inference benchmark — torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"ATen CPU capability {torch.backends.cpu.get_cpu_capability()}, device {device}, "
          f"dtype {args.dtype}{', int8' if args.int8 else ''}, F0 {args.f0}")  # fmt: skip
    compared = f"from {args.official} up to {args.compare_max_seconds:g} s" if official else "not run"
    print(f"fp32 matmul peak (2048², same threads): {peak:.1f} GFLOP/s; reps {args.reps} after 1 warm-up; "
          f"official {compared}")  # fmt: skip
    rows = []
    for seconds in args.lengths:
        inputs = prepare_inputs(seconds, args, ours, args.frames_per_token)
        for stage in args.stages:
            rows.append(run_stage(stage, seconds, inputs, ours, theirs, args))
            print(f"  done {stage} {seconds:g} s", file=sys.stderr, flush=True)
    print()
    print_table(rows, peak)
    extra: dict[str, Any] = {}
    if args.check and theirs is not None:
        extra["parity_noise0"] = parity(ours, theirs, args)
        print("\nparity at noise 0 (ours vs official, 12 s):", extra["parity_noise0"])
    if args.quality:
        extra["quality"] = quality(ours, fp32, args)
        print("\nquality (log-mel L1 at 12 s, this configuration vs fp32 + YAAPT, and fp32 seed 0 vs 1):",
              extra["quality"])  # fmt: skip
    if args.json:
        meta = {
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device),
            "dtype": args.dtype, "int8": args.int8, "f0": args.f0, "matmul_peak_gflops": peak,
            "capability": torch.backends.cpu.get_cpu_capability(),
        }  # fmt: skip
        args.json.write_text(
            json.dumps({"meta": meta, "rows": [r.as_dict() for r in rows], **extra}, indent=1)
        )


if __name__ == "__main__":
    main()
