"""MMS-300m semantic features: hidden state 7 of ``facebook/mms-300m`` (transformers ``Wav2Vec2``).

Only the first ``layer`` transformer layers are built and loaded (7 of 24), and the
encoder is run layer by layer here rather than through ``output_hidden_states``: whether
the last returned hidden state of a truncated stable-layer-norm encoder has the final
LayerNorm applied has changed across transformers versions, and the released models
were trained on the un-normalised output of layer 7.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .constants import HOP_LENGTH, SEMANTIC_LAYER
from .errors import AudioError, CheckpointError
from .nn.chunk_threads import concat_time_chunks
from .nn.inference import use_fast_path

if TYPE_CHECKING:  # transformers takes seconds to import: only the constructors below need it
    from transformers import Wav2Vec2Config, Wav2Vec2Model

MMS_REPO_ID = "facebook/mms-300m"
# official wrapper: with the 400-sample receptive field and 320 hop this gives N // 320 frames
REFLECT_PAD = 40
# Output frames per chunk of the time-major conv front end (2 s of audio; 50-100 measured best).
FRONT_END_CHUNK_FRAMES = 100
# MMS-300m's conv feature extractor; the product of the strides is HOP_LENGTH
MMS_CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
MMS_CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)
MMS_REGISTRY_NAME = "mms-300m"  # checkpoints.yaml's entry for MMS_REPO_ID (`hierspeech2 download mms-300m`)
# positional convolution of RandomSemanticEncoder
# (MMS-300m: kernel 128, groups 16; far wider than tiny inputs need)
POSITION_KERNEL = 16
POSITION_GROUPS = 4


class SemanticEncoder(nn.Module):
    """Raw 16 kHz waveform ``[B, N]`` → semantic features ``[B, 1024, N // 320]``."""

    # quantize_int8 leaves the conv front end in float32: its time-major float path takes about half
    # the time of int8 convolutions (MMS-300m, 12 s, 2-core AVX2 EPYC: 0.59 s against 1.17 s)
    int8_float_parts = ("model.feature_extractor",)

    def __init__(self, model: Wav2Vec2Model, layer: int = SEMANTIC_LAYER) -> None:
        super().__init__()
        if not 1 <= layer <= len(model.encoder.layers):
            raise ValueError(
                f"layer must be in 1..{len(model.encoder.layers)} for this model (it has "
                f"{len(model.encoder.layers)} transformer layers), got {layer}"
            )
        self.model = model.eval()
        self.layer = layer
        self.requires_grad_(False)

    @classmethod
    def from_config(cls, config: Wav2Vec2Config, layer: int = SEMANTIC_LAYER) -> SemanticEncoder:
        """A randomly initialised encoder truncated to ``layer`` layers
        (for tests and training from scratch)."""
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        config = Wav2Vec2Config.from_dict({**config.to_dict(), "num_hidden_layers": layer})
        return cls(Wav2Vec2Model(config), layer=layer)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike = MMS_REPO_ID, layer: int = SEMANTIC_LAYER, **hub_kwargs
    ) -> SemanticEncoder:
        """Load the first ``layer`` transformer layers of a transformers Wav2Vec2 checkpoint
        (Hub id or local dir).

        ``hub_kwargs`` go to ``Wav2Vec2Model.from_pretrained`` (``revision``, ``cache_dir``,
        ``local_files_only`` …). Weights of the unused layers and pre-training heads are skipped.
        A Hub model that is neither in the Hugging Face cache nor downloadable (``HF_HUB_OFFLINE``,
        no network) raises :class:`~hierspeech2.registry.DownloadError` within seconds, saying what
        to download.
        """
        is_hub_id = not Path(name_or_path).expanduser().is_dir()
        if is_hub_id:
            ensure_downloadable(str(name_or_path), **hub_kwargs)
        from transformers import Wav2Vec2Model

        try:
            model = Wav2Vec2Model.from_pretrained(str(name_or_path), num_hidden_layers=layer, **hub_kwargs)
        except OSError as error:
            if not is_hub_id:
                raise
            from .registry import DownloadError

            # the probe passed, so the Hub answered: the download itself failed (lost connection, disk)
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise DownloadError(f"downloading {name_or_path} failed: {first_line}") from error
        return cls(model, layer=layer)

    @property
    def hidden_size(self) -> int:
        """Channels of the features (MMS-300m: 1024)."""
        return self.model.config.hidden_size

    def forward(self, wav: Tensor) -> Tensor:
        """``[B, N]`` (or ``[N]`` / ``[B, 1, N]``) raw 16 kHz audio → ``[B, C, N // 320]``.

        The waveform is fed unnormalised, as the released models saw it.
        """
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        elif wav.dim() == 3 and wav.size(1) == 1:
            wav = wav.squeeze(1)
        if wav.dim() != 2:
            raise AudioError(f"expected a waveform [B, N], got shape {tuple(wav.shape)}")
        if wav.size(-1) < HOP_LENGTH:
            raise AudioError(
                f"audio too short for semantic features: {wav.size(-1)} samples, need at least {HOP_LENGTH}"
            )
        dtype = next(self.model.parameters()).dtype
        wav = F.pad(wav.to(dtype).unsqueeze(1), (REFLECT_PAD, REFLECT_PAD), mode="reflect").squeeze(1)
        hidden = self._hidden_state(wav)
        return hidden.transpose(1, 2)  # [B, T, C] -> [B, C, T]

    def _hidden_state(self, wav: Tensor) -> Tensor:
        """Hidden state ``self.layer`` of the transformers encoder, without its final LayerNorm: [B, T, C]."""
        model = self.model
        extractor = model.feature_extractor
        # The time-major front end reads float Conv1d weights: it stands aside for a post-norm front
        # end, for int8 twins (quantize_int8), and under autocast, where the modules pick each op's
        # dtype and its out= matmuls cannot.
        time_major = model.config.feat_extract_norm == "layer" and all(
            type(layer.conv) is nn.Conv1d for layer in extractor.conv_layers
        )
        if use_fast_path(wav) and time_major and not torch.is_autocast_enabled(wav.device.type):
            features = time_major_conv_features(extractor, wav)
        else:
            features = extractor(wav).transpose(1, 2)
        hidden, _ = model.feature_projection(features)
        encoder = model.encoder
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not model.config.do_stable_layer_norm:
            hidden = encoder.layer_norm(hidden)  # post-LN encoders normalise the input, not the output
        hidden = encoder.dropout(hidden)
        for block in encoder.layers[: self.layer]:
            out = block(hidden, attention_mask=None)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden


def time_major_conv_features(
    extractor: nn.Module, wav: Tensor, chunk_frames: int = FRONT_END_CHUNK_FRAMES
) -> Tensor:
    """transformers' layer-norm conv feature encoder (conv → LayerNorm over channels → activation,
    per layer), computed time-major: ``[B, N]`` → ``[B, T, C]``, the same function reordered.

    Each convolution is a sum over its taps of matmuls on strided views of the time-major input
    (no im2col copy), and LayerNorm needs no transposes, which the channel-major modules pay on
    every layer: about 20 % less time for MMS-300m's front end on a 2-core AVX-512 CPU (0.53 s →
    0.41-0.47 s for 12 s, ``benchmarks/inference.py``), within 4e-6 of it.

    Output frames are computed ``chunk_frames`` at a time, each chunk from the samples its frames
    read (the stack's receptive field; every layer's frames line up with the full run's, because
    chunks start at multiples of the total stride), so that a chunk's layers stay in cache: 0.55-0.64
    s → 0.47-0.56 s at 12 s on a 2-core AVX2 EPYC. The chunks run in order on torch's threads; on
    worker threads (:mod:`hierspeech2.nn.chunk_threads`) these matmuls were measured slower.
    """
    layers = extractor.conv_layers
    receptive, hop = 1, 1
    for layer in layers:
        receptive += (layer.conv.kernel_size[0] - 1) * hop
        hop *= layer.conv.stride[0]
    frames = (wav.shape[-1] - receptive) // hop + 1  # the forward's length check keeps this ≥ 1
    if frames <= chunk_frames:
        return _time_major_conv_stack(layers, wav)

    def piece(first: int, last: int) -> Tensor:
        return _time_major_conv_stack(layers, wav[:, first * hop : (last - 1) * hop + receptive])

    return concat_time_chunks(piece, frames, chunk_frames, wav.device, threads=False)


def _time_major_conv_stack(layers: nn.ModuleList, wav: Tensor) -> Tensor:
    """The layer-norm conv layers on ``[B, N]`` → ``[B, T, C]`` (see :func:`time_major_conv_features`)."""
    x = wav.unsqueeze(-1)  # [B, N, 1]
    for layer in layers:
        conv = layer.conv
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        frames = (x.shape[1] - kernel) // stride + 1
        # The bias goes into the first matmul (addmm) rather than a pass of its own afterwards.
        first = _biased_matmul(conv.bias)
        if x.shape[-1] == 1:  # the first layer: a plain im2col of the waveform is tiny
            windows = x[..., 0].unfold(1, kernel, stride).reshape(-1, kernel)
            y = first(windows, conv.weight[:, 0].t()).view(x.shape[0], frames, -1)
        else:
            rows = []
            for row in x:
                taps = [row[tap : tap + stride * (frames - 1) + 1 : stride] for tap in range(kernel)]
                out = first(taps[0], conv.weight[:, :, 0].t())
                for tap in range(1, kernel):
                    torch.addmm(
                        out, taps[tap], conv.weight[:, :, tap].t(), out=out
                    )  # counted by FLOP counters
                rows.append(out)
            y = rows[0].unsqueeze(0) if len(rows) == 1 else torch.stack(rows)
        norm = layer.layer_norm
        x = layer.activation(F.layer_norm(y, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
    return x


def _biased_matmul(bias: Tensor | None) -> Callable[[Tensor, Tensor], Tensor]:
    """``a @ b (+ bias)`` as one call."""
    if bias is None:
        return torch.mm
    return lambda a, b: torch.addmm(bias, a, b)


class RandomSemanticEncoder(SemanticEncoder):
    """A randomly initialised MMS-shaped encoder, the same for a given seed: tiny recipes and tests, offline.

    Same conv front end as MMS-300m (hop 320, ``[B, N]`` → ``[B, hidden_size, N // 320]``) and
    ``num_layers`` small stable-layer-norm transformer layers, all of whose output is used.
    Building it leaves the global random state untouched. ``name`` spells out every setting, so a
    feature cache made with one refuses to resume with another.
    """

    def __init__(
        self,
        hidden_size: int = 32,
        num_layers: int = 2,
        num_attention_heads: int = 4,
        intermediate_size: int = 64,
        conv_channels: int = 16,
        seed: int = 0,
    ) -> None:
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        sizes = {
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "num_attention_heads": num_attention_heads,
            "intermediate_size": intermediate_size,
            "conv_channels": conv_channels,
        }
        bad = {name: value for name, value in sizes.items() if not isinstance(value, int) or value < 1}
        if bad:
            raise ValueError(f"RandomSemanticEncoder sizes must be positive integers, got {bad}")
        if hidden_size % num_attention_heads or hidden_size % POSITION_GROUPS:
            raise ValueError(
                f"hidden_size ({hidden_size}) must be a multiple of num_attention_heads "
                f"({num_attention_heads}) and of {POSITION_GROUPS} (the positional convolution's groups)"
            )
        config = Wav2Vec2Config(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            conv_dim=(conv_channels,) * len(MMS_CONV_KERNELS),
            conv_kernel=MMS_CONV_KERNELS,
            conv_stride=MMS_CONV_STRIDES,
            num_conv_pos_embeddings=POSITION_KERNEL,
            num_conv_pos_embedding_groups=POSITION_GROUPS,
            do_stable_layer_norm=True,  # as MMS-300m
            feat_extract_norm="layer",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Wav2Vec2Model(config)
        super().__init__(model, layer=num_layers)
        settings = ", ".join(f"{key}={value}" for key, value in {**sizes, "seed": seed}.items())
        self.name = f"random-wav2vec2({settings})"


def ensure_downloadable(
    repo_id: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    **_: object,
) -> None:
    """Return when the Hub model ``repo_id`` is in the Hugging Face cache or the Hub answers; else raise
    :class:`~hierspeech2.registry.DownloadError` in one line naming what to download (or
    :class:`~hierspeech2.errors.CheckpointError` when ``repo_id`` is neither a folder nor a Hub id).

    One HEAD request without retries (:func:`hierspeech2.registry.hub.require_downloadable`), so
    that no network fails in seconds; the download itself is left to transformers.
    """
    from huggingface_hub.errors import HFValidationError

    from .registry.hub import require_downloadable, transformers_cached

    try:
        if transformers_cached(repo_id, revision=revision, cache_dir=cache_dir):
            return
    except HFValidationError as error:
        raise CheckpointError(
            f"{repo_id} is neither a local folder nor a Hugging Face model id (owner/name): {error}"
        ) from error
    command = (
        f"hierspeech2 download {MMS_REGISTRY_NAME}" if repo_id == MMS_REPO_ID else f"hf download {repo_id}"
    )
    require_downloadable(
        repo_id,
        command,
        repo_id=repo_id,
        filename="config.json",
        revision=revision or "main",
        local_files_only=local_files_only,
        cache_dir=cache_dir,
        token=token,
        alternative="pass a local transformers folder",
    )
