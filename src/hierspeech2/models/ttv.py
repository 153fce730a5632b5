"""TextToVec (TTV): phoneme ids + a prosody prompt → MMS-like semantic features and log F0.

HierSpeech++'s text-to-vec model ("ttv_libritts_v1", 107M parameters). At inference:

1. the style encoder turns the prompt mel into one style vector per prompt (two rows per
   prompt, original and denoised, mixed by ``denoise_ratio``);
2. the text encoder gives per-token hidden states and a Gaussian prior;
3. the stochastic duration predictor samples log durations, which are ceiled into a hard
   alignment that expands the prior to frames;
4. a prior sample goes back through the normalising flow, the semantic decoder turns it
   into 1024-channel semantic features, and the pitch predictor into log F0 at 4 frames per
   semantic frame.

Training: :meth:`TextToVec.forward` is the official training pass (posterior encoder on the
ground-truth semantic features, flow, monotonic alignment search against the text prior,
duration likelihood, phoneme classifier, pitch predictor on a window); it returns the tensors
the objective needs, and the objective itself (weights, masking) lives in
:class:`hierspeech2.tasks.TTVTask`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from ..checkpoint import NativeCheckpointMixin, OfficialCheckpointMixin
from ..errors import SettingError
from ..nn.alignment import monotonic_alignment_search
from ..nn.attention import Encoder
from ..nn.duration import StochasticDurationPredictor
from ..nn.flows import TransformerCouplingBlock
from ..nn.functional import length_mask, rand_slice_segments, sample_gaussian
from ..nn.style import StyleEncoder
from ..nn.upsampler import Upsampler
from ..nn.wavenet import WN
from ..text.symbols import SYMBOLS
from ..text.tables import resolve_symbols
from .ttv_inference import TextToVecInference, TextToVecInputs, check_prompt_rows

RELEASED_VOCABULARY = len(SYMBOLS)
# Weights with one row per symbol: they grow when the symbol table is extended.
SYMBOL_ROW_WEIGHTS = ("text_encoder.emb.weight", "phoneme_classifier.weight")


def _grow_rows(weight: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """``weight`` with ``count`` rows appended, drawn from N(mean, std²) of its rows per dimension."""
    rows = weight.detach().flatten(1).float()
    noise = torch.randn(count, rows.shape[1], generator=generator, device=rows.device)
    added = rows.mean(0) + rows.std(0) * noise
    return torch.cat([weight.detach(), added.reshape(count, *weight.shape[1:]).to(weight.dtype)])


def _vocabulary_size(n_vocab: int | None, symbols: tuple[str, ...] | None) -> int:
    if symbols is None:
        return RELEASED_VOCABULARY if n_vocab is None else n_vocab
    if n_vocab is not None and n_vocab != len(symbols):
        raise SettingError(
            f"n_vocab={n_vocab} but the symbol table has {len(symbols)} symbols; leave n_vocab out "
            "to size the embedding by the table"
        )
    return len(symbols)


class TextEncoder(nn.Module):
    """Phoneme ids → hidden states and prior (mean, log std), with the style added between two
    transformers."""

    def __init__(
        self,
        n_vocab: int,
        out_channels: int,
        hidden_channels: int,
        filter_channels: int,
        n_heads: int,
        n_layers: int,
        kernel_size: int,
        p_dropout: float,
        style_channels: int,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.emb = nn.Embedding(n_vocab, hidden_channels)
        nn.init.normal_(self.emb.weight, 0.0, hidden_channels**-0.5)
        self.cond = nn.Conv1d(style_channels, hidden_channels, 1)
        self.encoder = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout)
        self.encoder2 = Encoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(
        self, tokens: Tensor, token_lengths: Tensor, style: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``tokens`` [B, L], ``token_lengths`` [B], ``style`` [B, S, 1] → hidden [B, H, L], prior_mean,
        prior_log_std [B, C, L], text_mask [B, 1, L]."""
        x = self.emb(tokens) * math.sqrt(self.hidden_channels)
        x = x.transpose(1, 2)  # [B, L, H] -> [B, H, L]
        text_mask = length_mask(token_lengths, tokens.shape[1], dtype=x.dtype)
        x = self.encoder(x * text_mask, text_mask)
        x = x + self.cond(style)
        x = self.encoder2(x * text_mask, text_mask)
        prior_mean, prior_log_std = (self.proj(x) * text_mask).split(self.out_channels, dim=1)
        return x, prior_mean, prior_log_std, text_mask


class PosteriorEncoder(nn.Module):
    """Semantic features → latent posterior (sample, mean, log std) through a style-conditioned WaveNet."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        style_channels: int,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, gin_channels=style_channels)
        self.proj = nn.Conv1d(hidden_channels, 2 * out_channels, 1)

    def forward(
        self, semantic: Tensor, mask: Tensor, style: Tensor, noise_scale: float = 1.0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``semantic`` [B, 1024, T], ``mask`` [B, 1, T], ``style`` [B, S, 1] → z, mean, log_std [B, C, T]."""
        x = self.enc(self.pre(semantic) * mask, mask, g=style)
        mean, log_std = (self.proj(x) * mask).split(self.out_channels, dim=1)
        return sample_gaussian(mean, log_std, mask, noise_scale), mean, log_std


class SemanticDecoder(nn.Module):
    """Latent [B, C, T] → semantic features [B, 1024, T] through a style-conditioned WaveNet
    (``w2v_decoder``)."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation_rate: int,
        n_layers: int,
        style_channels: int,
        p_dropout: float,
    ) -> None:
        super().__init__()
        self.pre = nn.Conv1d(in_channels, hidden_channels, 1)
        self.enc = WN(hidden_channels, kernel_size, dilation_rate, n_layers, style_channels, p_dropout)
        self.proj = nn.Conv1d(hidden_channels, out_channels, 1)

    def forward(self, z: Tensor, mask: Tensor, style: Tensor) -> Tensor:
        """``z`` [B, C, T], ``mask`` [B, 1, T], ``style`` [B, S, 1] → [B, out, T]."""
        x = self.pre(z * mask) * mask
        return self.proj(self.enc(x, mask, g=style)) * mask


@torch.no_grad()
def _gaussian_log_likelihood(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(z_t | mean_l, std_l) summed over channels for every frame/token pair:
    [B, C, T] x [B, C, L] → [B, T, L].

    Expanded as in Glow-TTS so it costs two matrix products instead of a [B, C, T, L] tensor;
    computed in float32 because the search only compares these scores.
    """
    z, mean, log_std = z.float(), mean.float(), log_std.float()
    inv_var = torch.exp(-2.0 * log_std)  # [B, C, L]
    constant = torch.sum(-0.5 * math.log(2 * math.pi) - log_std, dim=1, keepdim=True)  # [B, 1, L]
    quadratic = torch.matmul(-0.5 * (z**2).transpose(1, 2), inv_var)  # [B, T, L]
    cross = torch.matmul(z.transpose(1, 2), mean * inv_var)  # [B, T, L]
    mean_term = torch.sum(-0.5 * mean**2 * inv_var, dim=1, keepdim=True)  # [B, 1, L]
    return constant + quadratic + cross + mean_term


@dataclass
class TextToVecTrainingOutput:
    """What the TTV training objective needs from one :meth:`TextToVec.forward` pass.

    ``T`` counts semantic frames, ``L`` tokens, ``S`` the frames of the pitch window.
    """

    semantic_pred: Tensor  # [B, 1024, T] semantic decoder output from the posterior sample
    posterior_in_prior_space: Tensor  # [B, C, T] flow(posterior sample), the VITS z_p
    posterior_log_std: Tensor  # [B, C, T]
    prior_mean: Tensor  # [B, C, T] text prior expanded to frames by the alignment
    prior_log_std: Tensor  # [B, C, T]
    frame_mask: Tensor  # [B, 1, T]
    text_mask: Tensor  # [B, 1, L]
    durations: Tensor  # [B, 1, L] frames per token found by monotonic alignment search
    duration_nll: Tensor  # [B] stochastic duration predictor's bound on -log p(durations), summed over tokens
    phoneme_logits: Tensor  # [B, n_vocab, T] phoneme classifier on the posterior sample
    log_f0_pred: Tensor  # [B, 1, 4 S] pitch predictor on a window of the ground-truth semantic features
    pitch_window_starts: Tensor  # [B] first semantic frame of each row's pitch window


class TextToVec(TextToVecInference, nn.Module, OfficialCheckpointMixin, NativeCheckpointMixin):
    """Text-to-vec: phoneme ids [B, L] + prompt mel → semantic features [B, 1024, T] and log F0 [B, 1, 4T].

    Defaults are the released "ttv_libritts_v1" configuration. Note that the official model
    hard-codes its text encoder (3 layers, kernel 9, dropout 0.2) and duration predictor
    (width = ``inter_channels``) instead of following the config file's ``n_layers``,
    ``kernel_size`` and ``filter_channels``; the defaults below are what the weights need.

    Constructor arguments are grouped by prefix: ``text_*`` (text encoder, ``enc_p``),
    ``posterior_*`` (``enc_q``), ``flow_*`` (``flow``), ``decoder_*`` (``w2v_decoder``),
    ``duration_*`` (``dp``), ``pitch_*`` (``pp``) and ``style_*`` (``emb_g``);
    ``inter_channels`` is the latent width, ``hidden_channels`` that of the posterior
    encoder and the flow.
    """

    OFFICIAL_PREFIXES = (
        ("enc_p.", "text_encoder."),
        ("enc_q.", "posterior_encoder."),
        ("w2v_decoder.", "semantic_decoder."),
        ("emb_g.", "style_encoder."),
        ("dp.", "duration_predictor."),
        ("pp.", "pitch_predictor."),
    )

    def __init__(
        self,
        n_vocab: int | None = None,
        mel_channels: int = 80,
        semantic_channels: int = 1024,
        inter_channels: int = 256,
        hidden_channels: int = 256,
        style_channels: int = 256,
        style_hidden_channels: int = 256,
        text_filter_channels: int = 1024,
        text_heads: int = 4,
        text_layers: int = 3,
        text_kernel_size: int = 9,
        text_dropout: float = 0.2,
        posterior_kernel_size: int = 5,
        posterior_layers: int = 16,
        flow_layers: int = 3,
        flow_count: int = 4,
        flow_heads: int = 4,
        flow_kernel_size: int = 5,
        flow_dropout: float = 0.1,
        decoder_hidden_channels: int = 512,
        decoder_kernel_size: int = 5,
        decoder_layers: int = 8,
        decoder_dropout: float = 0.1,
        duration_filter_channels: int = 256,
        duration_kernel_size: int = 3,
        duration_dropout: float = 0.5,
        duration_flows: int = 4,
        pitch_channels: int = 256,
        pitch_upsample_rates: tuple[int, ...] = (2, 2),
        pitch_upsample_kernel_sizes: tuple[int, ...] = (4, 4),
        pitch_resblock_kernel_sizes: tuple[int, ...] = (3, 5, 7),
        pitch_resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        symbols: Sequence[str] | str | None = None,
    ) -> None:
        super().__init__()
        symbols = resolve_symbols(symbols)
        n_vocab = _vocabulary_size(n_vocab, symbols)
        self.config = {key: value for key, value in locals().items() if key not in ("self", "__class__")}
        self.config["symbols"] = None if symbols is None else list(symbols)
        self.n_vocab = n_vocab
        if isinstance(self._hub_mixin_config, dict) and symbols is not None:
            # the table itself, not the path it was read from, travels with the weights
            self._hub_mixin_config.update(n_vocab=n_vocab, symbols=list(symbols))
        self.style_channels = style_channels
        self.semantic_channels = semantic_channels
        self.pitch_frames_per_frame = math.prod(pitch_upsample_rates)

        self.style_encoder = StyleEncoder(mel_channels, style_hidden_channels, style_channels)
        self.text_encoder = TextEncoder(
            n_vocab,
            inter_channels,
            inter_channels,
            text_filter_channels,
            text_heads,
            text_layers,
            text_kernel_size,
            text_dropout,
            style_channels,
        )
        self.posterior_encoder = PosteriorEncoder(
            semantic_channels,
            inter_channels,
            hidden_channels,
            posterior_kernel_size,
            1,
            posterior_layers,
            style_channels,
        )
        self.flow = TransformerCouplingBlock(
            inter_channels,
            hidden_channels,
            n_layers=flow_layers,
            n_flows=flow_count,
            gin_channels=style_channels,
            n_heads=flow_heads,
            kernel_size=flow_kernel_size,
            p_dropout=flow_dropout,
        )
        self.semantic_decoder = SemanticDecoder(
            inter_channels,
            decoder_hidden_channels,
            semantic_channels,
            decoder_kernel_size,
            1,
            decoder_layers,
            style_channels,
            decoder_dropout,
        )
        self.duration_predictor = StochasticDurationPredictor(
            inter_channels,
            duration_filter_channels,
            duration_kernel_size,
            duration_dropout,
            duration_flows,
            gin_channels=style_channels,
        )
        self.pitch_predictor = Upsampler(
            semantic_channels,
            pitch_channels,
            pitch_upsample_rates,
            pitch_upsample_kernel_sizes,
            pitch_resblock_kernel_sizes,
            pitch_resblock_dilations,
            activation="leaky_relu",
            cond_channels=style_channels,
            weight_norm_pre=False,
        )
        # training-only auxiliary head: phoneme logits from the posterior latent
        self.phoneme_classifier = nn.Conv1d(inter_channels, n_vocab, 1, bias=False)

    @property
    def symbols(self) -> tuple[str, ...] | None:
        """The symbol table the model reads (row ``i`` of the embedding is symbol ``i``).

        None means the released 178-symbol table (:data:`hierspeech2.text.SYMBOLS`), which models
        configured without ``symbols`` use; a model trained for another language carries its own.
        """
        symbols = self.config["symbols"]
        return None if symbols is None else tuple(symbols)

    @property
    def symbol_table(self) -> tuple[str, ...]:
        """:attr:`symbols`, with None resolved to the released table."""
        return SYMBOLS if self.symbols is None else self.symbols

    def grown_state_dict(
        self, source: TextToVec, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """``source``'s weights for this model, whose symbol table extends ``source``'s.

        The rows of the symbol embedding and of the phoneme classifier that ``source`` has are kept
        bit-identical; each new row is drawn from a normal distribution with the per-dimension mean
        and standard deviation of the existing rows, so new symbols start where the known ones live
        (as ``transformers``' mean-resizing of token embeddings does). Everything else is copied.
        """
        old, new = source.symbol_table, self.symbol_table
        if new[: len(old)] != old:
            first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), len(new))
            raise SettingError(
                f"this model's {len(new)}-symbol table does not extend the source's {len(old)}-symbol table "
                f"(they differ at row {first}); build the table with hierspeech2.text.extend_symbols "
                "(or preprocess --extend-symbols), which keeps the source's rows first"
            )
        state = source.state_dict()
        added = len(new) - len(old)
        if added:
            for key in SYMBOL_ROW_WEIGHTS:
                state[key] = _grow_rows(state[key], added, generator)
        return state

    def forward(
        self,
        semantic: Tensor,
        semantic_lengths: Tensor,
        tokens: Tensor,
        token_lengths: Tensor,
        prompt_mel: Tensor,
        pitch_window: int = 60,
    ) -> TextToVecTrainingOutput:
        """Training pass: semantic [B, 1024, T] + phoneme ids [B, L] + the utterance's own mel [B, 80, T].

        As the official trainer: the style comes from the target utterance's mel (one row per
        item, masked by ``semantic_lengths``); the posterior sample feeds the semantic decoder,
        the phoneme classifier and the flow; monotonic alignment search on the prior gives
        the durations the duration predictor learns; the pitch predictor sees a window of
        ``pitch_window`` ground-truth semantic frames. A row shorter than the window starts at
        frame 0 and its window runs into the zero padding (the official code does the same;
        the loss masks those frames).
        """
        frame_mask = length_mask(semantic_lengths, semantic.shape[-1], dtype=semantic.dtype)
        style = self.style_encoder(prompt_mel, frame_mask).unsqueeze(-1)
        hidden, prior_mean, prior_log_std, text_mask = self.text_encoder(tokens, token_lengths, style)

        z, _, posterior_log_std = self.posterior_encoder(semantic, frame_mask, style)
        phoneme_logits = self.phoneme_classifier(z * frame_mask)
        semantic_pred = self.semantic_decoder(z, frame_mask, style)
        z_p = self.flow(z, frame_mask, style)

        # Random-call order (posterior sample, window start, duration noise) follows the
        # official forward, so a seeded run reproduces it.
        # Drawn on the CPU's default generator, as official; a row shorter than the window
        # starts at 0 (its length counts as the window) and runs into the padding.
        padded = nn.functional.pad(semantic, (0, max(pitch_window - semantic.shape[-1], 0)))
        window, starts = rand_slice_segments(
            padded, semantic_lengths.clamp_min(pitch_window), pitch_window, generator=torch.default_generator
        )
        log_f0_pred = self.pitch_predictor(window, style)

        attention_mask = text_mask.unsqueeze(2) * frame_mask.unsqueeze(-1)  # [B, 1, T, L]
        path = monotonic_alignment_search(
            _gaussian_log_likelihood(z_p, prior_mean, prior_log_std), attention_mask.squeeze(1)
        )  # [B, T, L]
        durations = path.sum(1, keepdim=True)  # [B, 1, L]
        duration_nll = self.duration_predictor(hidden, text_mask, durations, style)

        # [B, T, L] @ [B, L, C] -> [B, T, C]: each frame takes its aligned token's prior
        prior_mean = (path @ prior_mean.transpose(1, 2)).transpose(1, 2)
        prior_log_std = (path @ prior_log_std.transpose(1, 2)).transpose(1, 2)
        return TextToVecTrainingOutput(
            semantic_pred=semantic_pred,
            posterior_in_prior_space=z_p,
            posterior_log_std=posterior_log_std,
            prior_mean=prior_mean,
            prior_log_std=prior_log_std,
            frame_mask=frame_mask,
            text_mask=text_mask,
            durations=durations,
            duration_nll=duration_nll,
            phoneme_logits=phoneme_logits,
            log_f0_pred=log_f0_pred,
            pitch_window_starts=starts,
        )

    def encode_style(
        self, prompt_mel: Tensor, prompt_mel_lengths: Tensor, batch_size: int, denoise_ratio: float = 0.0
    ) -> Tensor:
        """Style [B, S, 1] from ``prompt_mel`` [2B, 80, T] (rows original, denoised) or [B, 80, T].

        With two rows per prompt, ``style = (1 - denoise_ratio) · original + denoise_ratio · denoised``.
        Each prompt is encoded on its own valid frames, so padding never changes a style.
        """
        check_prompt_rows(prompt_mel, prompt_mel_lengths, batch_size)
        rows = prompt_mel.shape[0]
        lengths = prompt_mel_lengths.clamp(1, prompt_mel.shape[-1])
        # The style encoder masks after every block and pools over valid frames only, so a
        # padded row's style equals its prompt's alone (tests/nn/test_style.py).
        style = self.style_encoder(
            prompt_mel, length_mask(lengths, prompt_mel.shape[-1], dtype=prompt_mel.dtype)
        )
        if rows == 2 * batch_size:
            original, denoised = rearrange(style, "(b two) s -> two b s", two=2)
            style = (1 - denoise_ratio) * original + denoise_ratio * denoised
        return style.unsqueeze(-1)

    def predict_durations(
        self,
        hidden: Tensor,
        text_mask: Tensor,
        style: Tensor,
        noise_scale_w: float = 1.0,
        length_scale: float = 1.0,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Whole frame counts per token [B, 1, L] (``ceil(exp(log d) · length_scale)``, 0 on padding);
        ``noise`` [B, 2, L] is the duration sampler's standard normal draw (default: drawn here)."""
        log_durations = self.duration_predictor.infer(
            hidden, text_mask, style, noise_scale=noise_scale_w, noise=noise
        )
        return torch.ceil(torch.exp(log_durations) * text_mask * length_scale)

    def encode_for_inference(
        self, inputs: TextToVecInputs, duration_noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """→ style [B, S, 1], prior mean and log std per token [B, C, L], whole durations [B, 1, L]
        (``duration_noise`` [B, 2, L]: the duration sampler's draw, default drawn here)."""
        batch_size = inputs.tokens.shape[0]
        style = self.encode_style(
            inputs.prompt_mel, inputs.prompt_mel_lengths, batch_size, inputs.denoise_ratio
        )
        hidden, prior_mean, prior_log_std, text_mask = self.text_encoder(
            inputs.tokens, inputs.token_lengths, style
        )
        durations = self.predict_durations(
            hidden, text_mask, style, inputs.noise_scale_w, inputs.length_scale, noise=duration_noise
        )
        return style, prior_mean, prior_log_std, durations

    def decode(self, prior_sample: Tensor, frame_mask: Tensor, style: Tensor) -> tuple[Tensor, Tensor]:
        """Prior sample [B, C, T] → (semantic [B, 1024, T], log_f0 [B, 1, 4T]) through the reversed flow.

        The flow attends over padded frames and the pitch predictor is unmasked (as in the
        official model, whose weights depend on it), so rows are only independent of each
        other's padding when they have equal lengths; :meth:`infer` groups rows by length.
        """
        z = self.flow(prior_sample, frame_mask, style, reverse=True)
        semantic = self.semantic_decoder(z, frame_mask, style)
        return semantic, self.pitch_predictor(semantic, style)
