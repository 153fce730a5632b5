"""Zero-shot TTS: TextToVec (text → semantic + F0) → HierSpeech2 backbone → optional SpeechSR, for text
of any length."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..audio_stream import MemorySink
from ..chunking import ChunkPlan, CrossFader, Window, fade_in_weights
from ..constants import F0_FRAMES_PER_HOP, HOP_LENGTH, MODEL_SAMPLE_RATE, PAD_MULTIPLE, PITCH_FLOOR_HZ
from ..errors import MissingSymbolsError, TextError
from ..models import HierSpeech2, SpeechSR, TextToVec
from ..nn.inference import inference, inference_context
from ..options import FIRST_BLOCK_SECONDS, FIRST_PIECE_CHARS, TextToSpeechOptions
from ..text import SYMBOLS, missing_symbols_message, text_to_tokens
from ..text.segment import Piece, split_text
from .base import option
from .inputs import AudioInput
from .jobs import Result, SpeechJob
from .prompts import Prompt, PromptCache
from .scheduler import (
    PEAK,
    Run,
    device_of,
    dtype_of,
    equal_length_groups,
    finish_runs,
    guarded,
    make_sink,
    progress_bar,
    seeded,
)
from .synthesis import Synthesis

__all__ = [
    "FIRST_BLOCK_SECONDS",
    "FIRST_PIECE_CHARS",
    "PIECE_EDGE_FADE_SECONDS",
    "PITCH_FLOOR_HZ",
    "STREAM_CONTEXT_SECONDS",
    "TextToSpeech",
]

PIECE_EDGE_FADE_SECONDS = 0.005
"""Long-form TTS fades the edges of its pieces, so that the pauses start and end without clicks."""
STREAM_CONTEXT_SECONDS = 0.24
"""Context each side of a streamed backbone window (its output there is discarded); neighbouring
windows cross-fade over 0.16 s."""
STREAM_CONTEXT = round(STREAM_CONTEXT_SECONDS * MODEL_SAMPLE_RATE)
STREAM_CROSSFADE = 2 * PAD_MULTIPLE  # 0.16 s, as voice conversion's windows
STREAM_LARGEST_WINDOW = 64 * PAD_MULTIPLE  # 5.12 s owned by one streamed backbone call


def _stream_plan(first_block_seconds: float) -> ChunkPlan:
    """The window geometry of a stream's first backbone call (its core whole multiples of
    :data:`PAD_MULTIPLE`, 0.08 s; at most :data:`STREAM_LARGEST_WINDOW`)."""
    if not math.isfinite(first_block_seconds) or first_block_seconds <= 0:
        raise ValueError(
            f"first_block_seconds must be a positive number of seconds, got {first_block_seconds}"
        )
    first = max(1, round(first_block_seconds * MODEL_SAMPLE_RATE / PAD_MULTIPLE)) * PAD_MULTIPLE
    return ChunkPlan(min(STREAM_LARGEST_WINDOW, first), STREAM_CONTEXT, STREAM_CROSSFADE, PAD_MULTIPLE)


@dataclass
class _SpeechRun(Run):
    prompt: Prompt | None = None
    pieces: list[tuple[Piece, Tensor]] | None = None  # each with its tokens
    fade: bool = False  # several pieces: fade their edges


@dataclass
class _PieceJob:
    run: _SpeechRun
    piece: Piece
    tokens: Tensor
    last: bool


class TextToSpeech(Synthesis[TextToSpeechOptions]):
    """Zero-shot TTS: TextToVec (text → semantic + F0) → HierSpeech2 backbone → optional SpeechSR.

    Text of any length is split into pieces (:func:`~hierspeech2.text.segment.split_text`) that are
    spoken from one prompt encoding and joined with short pauses; ``batch_size`` pieces go through
    the text-to-vec model at once (padded; each row equals the piece alone), and pieces of equal
    length through the backbone.

    Args:
        ttv, backbone, speechsr: the models (``speechsr`` for 24/48 kHz output).
        denoiser: MP-SENet prompt denoiser; with one, ``denoise_ratio`` defaults to the official
            :data:`~hierspeech2.options.OFFICIAL_DENOISE_RATIO`.
        options: a :class:`~hierspeech2.options.TextToSpeechOptions`: output rate, noise scales,
            length scale, denoise ratio (defaults of every call), loudness, piece length and
            pieces per text-to-vec call.
        **overrides: fields of the options given as keywords (``length_scale=1.1`` …).
    """

    OPTIONS = TextToSpeechOptions
    max_piece_chars = option("max_piece_chars", "Longest text piece for one text-to-vec call.")

    def __init__(
        self,
        ttv: TextToVec,
        backbone: HierSpeech2,
        speechsr: SpeechSR | None = None,
        denoiser: nn.Module | None = None,
        *,
        options: TextToSpeechOptions | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(backbone, speechsr, denoiser, self._make_options(options, overrides))
        self.ttv = ttv.eval()

    @inference
    def __call__(
        self,
        text: str,
        prompt: AudioInput | Prompt,
        *,
        prompt_rate: int | None = None,
        seed: int | None = None,
        progress: bool = False,
        **settings: float,
    ) -> tuple[Tensor, int]:
        """Speak ``text`` (any length) in the voice and style of ``prompt`` → ``(waveform [N], output_rate)``.

        ``settings`` override the constructor's ``noise_scale_ttv``, ``noise_scale_vc``,
        ``noise_scale_w``, ``length_scale`` and ``denoise_ratio``.
        """
        job = SpeechJob(text, prompt, None, prompt_rate)
        (result,) = self._run([job], seed, progress, settings, raise_errors=True)
        return result.audio, self.output_rate

    @inference
    def synthesize_to_file(
        self,
        text: str,
        prompt: AudioInput | Prompt,
        output: str | os.PathLike,
        *,
        prompt_rate: int | None = None,
        seed: int | None = None,
        progress: bool = False,
        **settings: float,
    ) -> Path:
        """Speak ``text`` into ``output`` (format by extension), piece by piece: memory does not
        grow with the text."""
        job = SpeechJob(text, prompt, output, prompt_rate)
        (result,) = self._run([job], seed, progress, settings, raise_errors=True)
        return result.path

    @inference
    def synthesize_many(
        self,
        jobs: Sequence[SpeechJob | tuple[Any, ...]],
        *,
        seed: int | None = None,
        progress: bool = False,
        **settings: float,
    ) -> list[Result]:
        """``(text, prompt, output path or None)`` triples (or :class:`SpeechJob` s) → one
        :class:`Result` each.

        A prompt is a file path, a ``(waveform, sample_rate)`` pair or an encoded :class:`Prompt`;
        failures stay per job.
        """
        return self._run([SpeechJob.of(job) for job in jobs], seed, progress, settings, raise_errors=False)

    def stream(
        self,
        text: str,
        prompt: AudioInput | Prompt,
        *,
        prompt_rate: int | None = None,
        seed: int | None = None,
        first_piece_chars: int = FIRST_PIECE_CHARS,
        first_block_seconds: float | None = FIRST_BLOCK_SECONDS,
        **settings: Any,
    ) -> Iterator[Tensor]:
        """Speak ``text`` piece by piece: yields blocks of audio ``[n]`` at ``output_rate`` as they are made.

        The first piece is cut to about ``first_piece_chars`` characters so that audio starts early
        (F5-TTS does the same), and the backbone renders it in windows that grow from
        ``first_block_seconds`` (doubling, with :data:`STREAM_CONTEXT_SECONDS` of context each side
        and cross-fades; :meth:`~hierspeech2.chunking.ChunkPlan.growing_windows`), so the first block does
        not wait for the whole piece; later pieces continue the growth. ``first_block_seconds=None``
        renders every piece whole. Pauses between pieces come as blocks of silence. The whole text
        is checked (and refused with :class:`~hierspeech2.errors.MissingSymbolsError`) and the
        prompt encoded before the first block. Loudness: the first block sets the gain of the whole
        stream (``scale_norm``), lowered for a later one only as far as it would clip. ``seed``
        makes every piece reproducible (piece ``i`` is seeded with ``seed + i``).
        """
        if first_piece_chars < 1:
            raise ValueError(f"first_piece_chars must be positive, got {first_piece_chars}")
        plan = None if first_block_seconds is None else _stream_plan(first_block_seconds)
        options = self._call_options(settings)
        with inference_context():
            pieces = self._stream_pieces(text, options.language, first_piece_chars)
            if not isinstance(prompt, Prompt):
                prompt = self.encode_prompt(prompt, prompt_rate, denoise_ratio=options.denoise_ratio)
            else:
                PromptCache(self.encode_prompt, options.denoise_ratio, needs_f0=False).get(prompt, None)
        gain = self._stream_gain(prompt)
        for index, (piece, tokens) in enumerate(pieces):
            blocks = self._stream_piece(tokens, prompt, options, plan, seed, index)
            for audio, first, last, windows in blocks:
                if not audio.numel():
                    continue
                audio = gain(audio)
                yield self._fade_edges(audio, first, last) if len(pieces) > 1 else audio
            if plan is not None:  # the next piece goes on doubling
                plan = dataclasses.replace(plan, chunk=min(STREAM_LARGEST_WINDOW, plan.chunk * 2**windows))
            if index < len(pieces) - 1:
                yield torch.zeros(round(piece.pause * self.output_rate))

    def _stream_piece(
        self,
        tokens: Tensor,
        prompt: Prompt,
        options: TextToSpeechOptions,
        plan: ChunkPlan | None,
        seed: int | None,
        index: int,
    ) -> Iterator[tuple[Tensor, bool, bool, int]]:
        """One piece's audio as blocks (unnormalised), each with whether it starts or ends the piece
        and the number of windows of the piece."""
        with inference_context(), seeded(None if seed is None else seed + index):
            semantic, log_f0, frames = self._text_to_vec(tokens.reshape(1, -1), [prompt], options)
        total = int(frames[0]) * HOP_LENGTH
        if plan is None:
            windows = [Window(0, total, 0, total, 0, total)]
        else:
            windows = plan.growing_windows(total, STREAM_LARGEST_WINDOW)
        ratio = self.output_rate / MODEL_SAMPLE_RATE
        fader = CrossFader(round(STREAM_CROSSFADE * ratio) if len(windows) > 1 else 0)
        for number, window in enumerate(windows):
            with inference_context(), seeded(None if seed is None else hash((seed, index, number)) % 2**31):
                first, last = window.start // HOP_LENGTH, -(-window.end // HOP_LENGTH)
                (audio,) = self._render_rows(
                    semantic[..., first:last],
                    log_f0[..., F0_FRAMES_PER_HOP * first : F0_FRAMES_PER_HOP * last],
                    [prompt],
                    options.noise_scale_vc,
                    options.denoise_ratio,
                )
                finished = fader.push(window.crop(audio, ratio))
            # one window: its output is the whole piece; several: the fader's tail ends it
            yield finished, number == 0, len(windows) == 1, len(windows)
        yield fader.finish(), False, len(windows) > 1, len(windows)

    def _stream_pieces(self, text: str, language: str, first_piece_chars: int) -> list[tuple[Piece, Tensor]]:
        """The pieces of ``text`` with the first cut short (at a clause or word boundary)."""
        pieces = self._pieces(text, language)
        first = pieces[0][0]
        if len(first.text) <= first_piece_chars:
            return pieces
        parts = split_text(first.text, first_piece_chars)
        if len(parts) <= 1:
            return pieces
        head = [(part, self._tokens(part.text, language)) for part in parts[:-1]]
        last = Piece(parts[-1].text, first.pause)
        return [*head, (last, self._tokens(last.text, language)), *pieces[1:]]

    @inference
    def synthesize_from_tokens(
        self,
        tokens: Tensor,
        prompt_mel: Tensor,
        noise_scale_ttv: float | None = None,
        noise_scale_vc: float | None = None,
        noise_scale_w: float | None = None,
        length_scale: float | None = None,
        denoise_ratio: float | None = None,
        prompt_peak: float = PEAK,
    ) -> Tensor:
        """Token ids ``[L]``/``[1, L]`` + prompt log-mel ``[2, 80, T]`` → final waveform ``[N]``
        at ``output_rate``.

        The rows of ``prompt_mel`` are the original and the denoised prompt; their styles are mixed by
        ``denoise_ratio`` (no denoiser needed). Settings left at None take the constructor's values, as in
        ``__call__``.
        """
        options = self._call_options(
            {
                "noise_scale_ttv": noise_scale_ttv,
                "noise_scale_vc": noise_scale_vc,
                "noise_scale_w": noise_scale_w,
                "length_scale": length_scale,
                "denoise_ratio": denoise_ratio,
            }
        )
        prompt = Prompt(mel=prompt_mel, peak=prompt_peak, denoised=True)
        (audio,) = self._speak(tokens.reshape(1, -1), [prompt], options)
        sink = MemorySink(self.scale_norm, self._peak_for(prompt))
        sink.write(audio)
        return sink.close()

    def _run(
        self,
        jobs: Sequence[SpeechJob],
        seed: int | None,
        progress: bool,
        settings: dict[str, float],
        raise_errors: bool,
    ) -> list[Result]:
        options, runs = self._start_runs(jobs, _SpeechRun, lambda job: job.prompt, settings, raise_errors)
        pieces = [
            _PieceJob(run, piece, tokens, i == len(run.pieces) - 1)
            for run in runs
            if not run.failed
            for i, (piece, tokens) in enumerate(run.pieces)
        ]
        with seeded(seed), progress_bar(len(pieces), progress, "piece", "speaking") as bar:
            for start in range(0, len(pieces), self.batch_size):
                wave = [p for p in pieces[start : start + self.batch_size] if not p.run.failed]
                for item, audio in zip(wave, guarded(lambda group: self._speak_pieces(group, options), wave)):
                    if isinstance(audio, BaseException):
                        item.run.fail(audio)
                    elif not item.run.failed:
                        self._push_piece(item, audio)
                bar.update(len(wave))
        return finish_runs(runs, raise_errors)

    def _prepare(
        self, run: _SpeechRun, job: SpeechJob, prompts: PromptCache, options: TextToSpeechOptions
    ) -> None:
        pieces = self._pieces(job.text, options.language)
        run.prompt = prompts.get(job.prompt, job.prompt_rate)
        run.sink = make_sink(job.output, self.output_rate, self.scale_norm, self._peak_for(run.prompt))
        run.pieces, run.remaining, run.fade = pieces, len(pieces), len(pieces) > 1

    def _tokens(self, text: str, language: str) -> Tensor:
        return text_to_tokens(text, language, symbols=self._symbols)

    @property
    def _symbols(self) -> tuple[str, ...] | None:
        symbols = self.ttv.symbols
        if symbols is None and self.ttv.n_vocab != len(SYMBOLS):
            raise TextError(
                f"this text-to-vec model has {self.ttv.n_vocab} symbol rows and no symbol table of its own; "
                "give it one (TextToVec(symbols=...)) to map text to its ids"
            )
        return symbols

    def _pieces(self, text: str, language: str) -> list[tuple[Piece, Tensor]]:
        if not isinstance(text, str):
            raise TextError(f"text must be a str, got {type(text).__name__}")
        pieces = split_text(text, self.max_piece_chars)
        if len(pieces) <= 1:  # one piece: the text reaches the front end unchanged
            return [(pieces[0] if pieces else Piece(text, 0.0), self._tokens(text, language))]
        tokenised, failures = [], []
        missing: Counter[str] = Counter()
        with warnings.catch_warnings(record=True) as dropped:
            warnings.simplefilter("always")
            for piece in pieces:
                try:
                    tokenised.append((piece, self._tokens(piece.text, language)))
                except MissingSymbolsError as error:
                    missing.update(error.missing)
                except TextError as error:
                    failures.append(str(error))
        if missing:  # refuse the whole text, with one count over all its pieces
            raise MissingSymbolsError(missing_symbols_message(missing, text, language), missing)
        if dropped:  # one summary instead of one warning per piece of a book
            warnings.warn(
                f"{len(dropped)} of {len(pieces)} pieces lost symbols the model has no id for; first: "
                f"{dropped[0].message}",
                stacklevel=7,
            )
        if failures:
            warnings.warn(
                f"skipped {len(failures)} piece(s) without speakable words: {failures[0]}", stacklevel=7
            )
        if not tokenised:
            raise TextError(f"none of the {len(pieces)} pieces of the text yields phonemes: {failures[0]}")
        return tokenised

    def _speak_pieces(self, group: list[_PieceJob], options: TextToSpeechOptions) -> list[Tensor]:
        lengths = [p.tokens.numel() for p in group]
        tokens = torch.zeros(len(group), max(lengths), dtype=torch.long)
        for row, item in enumerate(group):
            tokens[row, : lengths[row]] = item.tokens
        return self._speak(tokens, [p.run.prompt for p in group], options, token_lengths=lengths)

    def _speak(
        self,
        tokens: Tensor,
        prompts: Sequence[Prompt],
        options: TextToSpeechOptions,
        token_lengths: Sequence[int] | None = None,
    ) -> list[Tensor]:
        """Token rows [B, L] (zero-padded) → one waveform per row, unnormalised; TTV batched,
        backbone by length."""
        semantic, log_f0, frames = self._text_to_vec(tokens, prompts, options, token_lengths)
        frames = frames.tolist()
        audio: list[Tensor | None] = [None] * len(frames)
        for rows in equal_length_groups(range(len(frames)), lambda row: frames[row], len(frames)):
            length = frames[rows[0]]
            out = self._render_rows(
                semantic[rows, :, :length],
                log_f0[rows, :, : F0_FRAMES_PER_HOP * length],
                [prompts[r] for r in rows],
                options.noise_scale_vc,
                options.denoise_ratio,
            )
            for row, wav in zip(rows, out):
                audio[row] = wav
        return audio

    def _text_to_vec(
        self,
        tokens: Tensor,
        prompts: Sequence[Prompt],
        options: TextToSpeechOptions,
        token_lengths: Sequence[int] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Token rows [B, L] → semantic [B, C, T], log F0 [B, 1, 4T] (unvoiced below the pitch
        floor set to 0) and valid frames per row [B]."""
        device = device_of(self.ttv)
        token_lengths = token_lengths or [tokens.shape[-1]] * tokens.shape[0]
        # the prompt rows in the backbone's dtype, then in the TTV's (as it always was)
        prompt_mel, prompt_lengths = self._prompt_rows(prompts)
        semantic, log_f0, frames = self.ttv.infer_with_lengths(
            tokens.to(device),
            torch.tensor(token_lengths, device=device),
            prompt_mel.to(device, dtype_of(self.ttv)),
            prompt_lengths.to(device),
            noise_scale=options.noise_scale_ttv,
            noise_scale_w=options.noise_scale_w,
            length_scale=options.length_scale,
            denoise_ratio=options.denoise_ratio,
        )
        return semantic, log_f0.masked_fill(log_f0 < math.log(PITCH_FLOOR_HZ), 0.0), frames

    def _fade_edges(self, audio: Tensor, start: bool = True, end: bool = True) -> Tensor:
        """``audio`` of one piece with its start and/or end faded in place over
        :data:`PIECE_EDGE_FADE_SECONDS`, so that the pauses between pieces start and end without clicks."""
        edge = min(round(PIECE_EDGE_FADE_SECONDS * self.output_rate), audio.numel() // 2)
        ramp = fade_in_weights(edge, audio)
        if start:
            audio[:edge] *= ramp
        if end:
            audio[audio.numel() - edge :] *= ramp.flip(0)
        return audio

    def _push_piece(self, item: _PieceJob, audio: Tensor) -> None:
        run = item.run
        if run.fade:
            audio = self._fade_edges(audio.clone())
        run.sink.write(audio)
        if not item.last:
            run.sink.write(audio.new_zeros(round(item.piece.pause * self.output_rate)))
        run.remaining -= 1
        if run.remaining == 0:
            run.finish()
