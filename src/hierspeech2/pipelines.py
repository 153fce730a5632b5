"""End-to-end inference with the official HierSpeech++ semantics: VC, TTS and super-resolution.

Inputs are file paths, numpy arrays or tensors at any sample rate; calling a pipeline returns
``(waveform [N] float32 tensor on CPU, sample_rate)``. For real use:

* long inputs are processed in overlapping windows of equal length with cross-fades
  (:mod:`hierspeech2.chunking`), so model memory does not grow with the input; the ``*_file``
  methods also stream their input and output, so nothing grows with it;
* long text is split into sentence-sized pieces joined with short pauses
  (:func:`hierspeech2.text.segment.split_text`), all spoken from one prompt encoding;
* the ``*_many`` methods run several jobs with batched model calls and report failures per job;
* a voice prompt can be denoised with MP-SENet (``denoiser=``, ``denoise_ratio``) as officially.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np
import torch
from torch import Tensor, nn

from .audio import LogMelSpectrogram, load_audio, pad_to_multiple, resample, validate_waveform
from .audio_stream import AudioReader, FileSink, MemorySink
from .chunking import ChunkPlan, CrossFader, Window, fade_in_weights
from .errors import AudioError, HierSpeechError, SettingError, TextError
from .models import HierSpeech2, SpeechSR, TextToVec
from .nn.inference import inference, use_fast_activations
from .pitch import F0_METHODS, extract_f0, yaapt
from .text import text_to_tokens
from .text.segment import MAX_PIECE_CHARS, Piece, split_text

if TYPE_CHECKING:
    from .ssl import SemanticEncoder

log = logging.getLogger(__name__)

AudioInput = Union[str, "os.PathLike[str]", np.ndarray, Tensor]
ScaleNorm = Literal["max", "prompt", "none"]
F0Extractor = Callable[[Tensor], Tensor]
"""16 kHz waveform ``[N]`` → F0 in Hz, one frame per 80 samples (``[N / 80]`` for N a multiple of 80), 0 = unvoiced."""

SAMPLE_RATE = 16_000
SOURCE_MULTIPLE = 1280  # official VC pads the source so MMS frames (hop 320) and F0 frames (hop 80) align
# official pads prompts to a multiple of lcm(320, 400): model hop 320, denoiser hop 400
PROMPT_MULTIPLE = 1600
F0_HOP = 80  # samples per F0 frame (4 per 320-sample model hop)
MIN_PROMPT_SECONDS = 0.5
PITCH_FLOOR_HZ = 55.0  # the official TTS chain zeroes log F0 below this
PEAK = 0.999  # official output peak after "max" normalisation
OUTPUT_RATES = (16_000, 24_000, 48_000)
MAX_CHANNELS = 32  # a [C, N] array with more rows than this is taken for a batch, which pipelines refuse
OFFICIAL_DENOISE_RATIO = 0.8  # official inference scripts' --denoise_ratio default
# Float audio is about [-1, 1]; far beyond, the spectrogram features overflow and the output turns to NaN.
MAX_INPUT_PEAK = 1_000.0
# long-form TTS: fades at piece edges so that the pauses start and end without clicks
PIECE_EDGE_FADE_SECONDS = 0.005

# Voice conversion: 20.48 s owned per window, 1.28 s of context each side, 0.16 s cross-fades;
# a source up to 23.04 s (padded) is converted whole, exactly as the official script does.
VC_CHUNKS = ChunkPlan(
    chunk=256 * SOURCE_MULTIPLE,
    context=16 * SOURCE_MULTIPLE,
    crossfade=2 * SOURCE_MULTIPLE,
    multiple=SOURCE_MULTIPLE,
)
# SpeechSR is convolutional with a receptive field under 100 samples: 0.1 s of context makes the
# windowed output equal the whole one; 10 s per window bounds memory.
SR_CHUNKS = ChunkPlan(chunk=500 * 320, context=5 * 320, crossfade=2 * 320, multiple=320)


def as_waveform(
    audio: AudioInput, sample_rate: int | None, name: str, target_rate: int = SAMPLE_RATE
) -> Tensor:
    """A path, array or tensor → mono float32 ``[N]`` at ``target_rate`` (validated: non-empty, finite)."""
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, target_rate)
    if sample_rate is None:
        raise AudioError(
            f"{name}: pass its sample rate together with an array or tensor (or give a file path)"
        )
    wav = validate_waveform(audio, name).detach().to(device="cpu", dtype=torch.float32)
    if wav.dim() == 2 and wav.shape[0] <= MAX_CHANNELS:  # [C, N]: mix down to mono
        wav = wav.mean(dim=0)
    elif wav.dim() != 1:
        raise AudioError(
            f"{name}: expected mono [N] or multichannel [C, N] audio, got shape {tuple(wav.shape)}"
        )
    return resample(wav, sample_rate, target_rate) if sample_rate != target_rate else wav


def check_peak(wav: Tensor, name: str) -> Tensor:
    """``wav`` unchanged, or an :class:`AudioError` when its samples are far outside [-1, 1] (no longer audio)."""
    peak = float(wav.abs().max()) if wav.numel() else 0.0
    if peak > MAX_INPUT_PEAK:
        raise AudioError(
            f"{name} peaks at {peak:.3g}, but audio samples belong in [-1, 1] (limit {MAX_INPUT_PEAK:g}); "
            "is it 16-bit PCM stored as float? divide it by 32768"
        )
    return wav


def check_scale(name: str, value: float, positive: bool = False) -> float:
    """``value`` as a float, or a :class:`SettingError` when it is NaN/Inf, negative (or zero with ``positive``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise SettingError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


def _with_rate(audio: Any, sample_rate: int | None) -> tuple[Any, int | None]:
    """``(waveform, rate)`` pairs (how ``*_many`` jobs pass in-memory audio) → waveform and rate."""
    if isinstance(audio, tuple) and len(audio) == 2 and not isinstance(audio[1], (Tensor, np.ndarray)):
        return audio
    return audio, sample_rate


def _reader(audio: AudioInput, sample_rate: int | None, name: str) -> AudioReader:
    audio, sample_rate = _with_rate(audio, sample_rate)
    if not isinstance(audio, (str, os.PathLike)):
        audio = as_waveform(audio, sample_rate, name)
        sample_rate = SAMPLE_RATE
    return AudioReader(audio, sample_rate, SAMPLE_RATE, name)


def peak_normalise(wav: Tensor, peak: float) -> Tensor:
    """Scale so that ``max |wav| == peak`` (silence stays silence)."""
    top = wav.abs().max()
    return wav if top == 0 else wav / top * peak


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with a fixed CPU/CUDA RNG state when ``seed`` is given, restoring it afterwards."""
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def transfer_log_f0(source_f0: np.ndarray, prompt_f0: np.ndarray) -> Tensor:
    """Move the source's voiced F0 to the prompt's mean/std (official VC) → ``log(F0 + 1)``, float32."""
    f0 = source_f0.astype(np.float64).copy()
    voiced, prompt_voiced = f0 != 0, prompt_f0[prompt_f0 != 0].astype(np.float64)
    if voiced.any():
        if prompt_voiced.size == 0:
            warnings.warn(
                "the voice prompt has no voiced frame; keeping the source's F0 unchanged", stacklevel=3
            )
        else:
            standardised = (f0[voiced] - f0[voiced].mean()) / max(f0[voiced].std(), 1e-8)
            f0[voiced] = (standardised * prompt_voiced.std() + prompt_voiced.mean()).clip(min=0)
    return torch.log(torch.from_numpy(f0 + 1).float())


def yaapt_f0(wav: Tensor) -> Tensor:
    """The official VC F0: YAAPT with ``f0_max=1100`` → Hz ``[ceil(N / 80)]``."""
    return yaapt(wav, variant="inference").reshape(-1)


def inference_f0_extractor(method: str | F0Extractor) -> F0Extractor:
    """An F0 extractor for voice conversion: a callable, or a name from :data:`hierspeech2.pitch.F0_METHODS`.

    Names use the official VC setting (``f0_max=1100``).
    """
    if callable(method):
        return method
    if method == "yaapt":
        return yaapt_f0
    if method not in F0_METHODS:
        raise ValueError(
            f"unknown F0 method {method!r}; choose one of {', '.join(F0_METHODS)} or pass a callable"
        )
    return functools.partial(_named_f0, method=method)


def _named_f0(wav: Tensor, method: str) -> Tensor:
    return extract_f0(wav, method=method, variant="inference").reshape(-1)


@dataclass(frozen=True)
class Prompt:
    """A voice prompt encoded once: log-mel rows (original, denoised) ``[2, 80, T]``, its peak, its F0 (VC).

    ``denoised`` says whether the second row went through the denoiser (otherwise it repeats the first).
    """

    mel: Tensor
    peak: float
    f0: np.ndarray | None = None
    denoised: bool = False


@dataclass
class Result:
    """The outcome of one job of a ``*_many`` call: the audio (or the written file), or the error."""

    audio: Tensor | None = None
    path: Path | None = None
    sample_rate: int = SAMPLE_RATE
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Job:
    """One item being rendered window by window into its sink."""

    index: int
    sink: MemorySink | FileSink | None = None
    windows: list[Window] = field(default_factory=list)
    fader: CrossFader | None = None
    state: dict[str, Any] = field(default_factory=dict)
    remaining: int = 0
    result: Result = field(default_factory=Result)

    def fail(self, error: BaseException) -> None:
        if self.result.error is None:
            self.result.error = error
            log.debug("job %d failed: %s", self.index, error)
        if self.sink is not None:
            self.sink.discard()
            self.sink = None

    @property
    def failed(self) -> bool:
        return self.result.error is not None

    def push(self, block: Tensor, ratio: float, window: Window) -> None:
        self.sink.write(self.fader.push(window.crop(block, ratio)))
        self.remaining -= 1
        if self.remaining == 0:
            self.sink.write(self.fader.finish())
            self.finish()

    def finish(self) -> None:
        closed = self.sink.close()
        self.sink = None
        if isinstance(closed, Path):
            self.result.path = closed
        else:
            self.result.audio = closed


# Errors a job can raise that stop that job only (user data or a model call that cannot run on it).
_JOB_ERRORS = (HierSpeechError, ValueError, RuntimeError, OSError)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _dtype_of(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def _equal_length_groups(
    items: Sequence[Any], length: Callable[[Any], int], batch_size: int
) -> Iterator[list[Any]]:
    """Consecutive runs of ``items`` (stably sorted by length) of equal length, at most ``batch_size`` long."""
    ordered = sorted(items, key=length)
    group: list[Any] = []
    for item in ordered:
        if group and (len(group) == batch_size or length(group[0]) != length(item)):
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def _progress(total: int, enabled: bool, unit: str, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit=unit, desc=description, file=sys.stderr, leave=False)


def _run_windows(
    jobs: Sequence[_Job],
    render: Callable[[list[tuple[_Job, Window]]], Tensor],
    ratio: float,
    batch_size: int,
    progress: bool,
) -> None:
    """Render every window of every job, equal-length windows ``batch_size`` at a time; failures stay per job."""
    queue = [(job, window) for job in jobs if not job.failed for window in job.windows]
    with _progress(len(queue), progress, "window", "converting") as bar:
        for group in _equal_length_groups(queue, lambda item: item[1].length, batch_size):
            group = [item for item in group if not item[0].failed]
            for (job, window), out in zip(group, _guarded(render, group)):
                if isinstance(out, BaseException):
                    job.fail(out)
                elif not job.failed:
                    job.push(out, ratio, window)
            bar.update(len(group))


def _guarded(render: Callable[[list[Any]], Tensor], group: list[Any]) -> list[Tensor | BaseException]:
    """``render(group)`` split per row; if the batch fails, each row is retried alone to find the culprit."""
    if not group:
        return []
    try:
        return list(render(group))
    except _JOB_ERRORS as error:
        if len(group) == 1:
            return [error]
    return [_guarded(render, [item])[0] for item in group]


class SuperResolution:
    """16 kHz → 24/48 kHz speech with SpeechSR; any input rate is first resampled to 16 kHz.

    Inputs of any length run in windows of ``chunk_plan`` (identical to one pass, see ``SR_CHUNKS``);
    ``batch_size`` windows go through the model at once.
    """

    def __init__(
        self,
        speechsr: SpeechSR,
        scale_norm: ScaleNorm = "max",
        chunk_plan: ChunkPlan = SR_CHUNKS,
        batch_size: int = 1,
    ) -> None:
        self.speechsr = use_fast_activations(speechsr.eval())
        self.scale_norm = scale_norm
        self.chunk_plan = chunk_plan
        self.batch_size = batch_size

    @property
    def output_rate(self) -> int:
        return int(self.speechsr.output_rate)

    @inference
    def __call__(self, audio: AudioInput, sample_rate: int | None = None) -> tuple[Tensor, int]:
        """Super-resolve ``audio`` → ``(waveform [⌊ratio · N⌋], output_rate)``."""
        (result,) = self._run([(audio, sample_rate, None)], raise_errors=True)
        return result.audio, self.output_rate

    @inference
    def process_file(
        self,
        audio: AudioInput,
        output: str | os.PathLike,
        sample_rate: int | None = None,
        progress: bool = False,
    ) -> Path:
        """Super-resolve into ``output`` (format by extension), streaming: memory does not grow with the input."""
        (result,) = self._run([(audio, sample_rate, output)], raise_errors=True, progress=progress)
        return result.path

    @inference
    def process_many(
        self, jobs: Sequence[tuple[AudioInput, str | os.PathLike | None]], progress: bool = False
    ) -> list[Result]:
        """``(input, output path or None)`` pairs → one :class:`Result` each; a failing input fails alone.

        An input is a file path or a ``(waveform, sample_rate)`` pair.
        """
        return self._run(
            [(audio, None, output) for audio, output in jobs], raise_errors=False, progress=progress
        )

    def _run(
        self, items: list[tuple[Any, int | None, Any]], raise_errors: bool, progress: bool = False
    ) -> list[Result]:
        jobs = []
        for index, (audio, sample_rate, output) in enumerate(items):
            job = _Job(index, result=Result(sample_rate=self.output_rate))
            try:
                reader = _reader(audio, sample_rate, "input audio")
                job.windows = self.chunk_plan.windows(reader.num_samples)
                job.state["reader"] = reader
                job.sink = _sink(output, self.output_rate, self.scale_norm, PEAK)
            except _JOB_ERRORS as error:
                if raise_errors:
                    raise
                job.fail(error)
            job.fader = CrossFader(round(self.chunk_plan.crossfade * self._ratio))
            job.remaining = len(job.windows)
            jobs.append(job)
        _run_windows(jobs, self._render, self._ratio, self.batch_size, progress)
        return _results(jobs, raise_errors)

    @property
    def _ratio(self) -> float:
        return self.output_rate / SAMPLE_RATE

    def _render(self, group: list[tuple[_Job, Window]]) -> Tensor:
        wav = check_peak(
            torch.stack([job.state["reader"].read(w.start, w.end) for job, w in group]), "input audio"
        )
        device, dtype = _device_of(self.speechsr), _dtype_of(self.speechsr)
        return self.speechsr(wav.unsqueeze(1).to(device, dtype))[:, 0].float().cpu()


def _sink(
    output: str | os.PathLike | None, rate: int, scale_norm: ScaleNorm, peak: float
) -> MemorySink | FileSink:
    if output is None:
        return MemorySink(scale_norm, peak)
    return FileSink(output, rate, scale_norm, peak)


def _results(jobs: Sequence[_Job], raise_errors: bool) -> list[Result]:
    for job in jobs:
        if job.sink is not None and not job.failed and job.remaining <= 0:
            job.finish()
        if raise_errors and job.failed:
            raise job.result.error
    return [job.result for job in jobs]


class _Synthesis:
    """What VC and TTS share: prompt encoding, the backbone call, optional SpeechSR."""

    def __init__(
        self,
        backbone: HierSpeech2,
        speechsr: SpeechSR | None,
        denoiser: nn.Module | None,
        output_rate: int,
        scale_norm: ScaleNorm,
        denoise_ratio: float | None,
    ) -> None:
        if output_rate not in OUTPUT_RATES:
            raise ValueError(f"output_rate must be one of {OUTPUT_RATES}, got {output_rate}")
        if output_rate != SAMPLE_RATE and (speechsr is None or speechsr.output_rate != output_rate):
            have = "none" if speechsr is None else f"{speechsr.output_rate} Hz"
            raise ValueError(
                f"output_rate={output_rate} needs a SpeechSR model for {output_rate} Hz (have {have}); "
                f"pass speechsr=SpeechSR.from_packaged({output_rate}) or output_rate=16000"
            )
        self.backbone = use_fast_activations(backbone.eval())
        self.speechsr = use_fast_activations(speechsr.eval()) if speechsr is not None else None
        self.denoiser = denoiser.eval() if denoiser is not None else None
        self.output_rate = output_rate
        self.scale_norm = scale_norm
        # Without a denoiser a ratio > 0 still mixes the rows of prompts given already denoised
        # (encoded Prompts, synthesize_from_tokens); only encoding audio needs the denoiser.
        self.denoise_ratio = self._check_ratio(
            denoise_ratio
            if denoise_ratio is not None
            else OFFICIAL_DENOISE_RATIO
            if denoiser is not None
            else 0.0
        )
        self.mel = LogMelSpectrogram().to(_device_of(backbone))

    @property
    def ratio(self) -> float:
        """Output samples per 16 kHz sample."""
        return self.output_rate / SAMPLE_RATE

    def _check_ratio(self, denoise_ratio: float) -> float:
        try:
            ratio = float(denoise_ratio)
        except (TypeError, ValueError):
            ratio = math.nan
        if not 0.0 <= ratio <= 1.0:  # NaN fails too
            raise SettingError(f"denoise_ratio must be in [0, 1], got {denoise_ratio!r}")
        return ratio

    def _check_denoiser(self, denoise_ratio: float) -> None:
        """Refuse to encode prompt audio at ``denoise_ratio > 0`` without a denoiser to make the denoised row."""
        if denoise_ratio > 0 and self.denoiser is None:
            raise SettingError(
                f"denoise_ratio={denoise_ratio} needs a prompt denoiser to denoise the voice prompt audio; "
                "none is loaded, so pass denoise_ratio=0, load one (denoiser=hierspeech2.load_model('denoiser')), "
                "or pass a Prompt whose second row is already denoised"
            )

    @inference
    def encode_prompt(
        self,
        audio: AudioInput,
        sample_rate: int | None = None,
        denoise_ratio: float | None = None,
        f0_extractor: F0Extractor | None = None,
    ) -> Prompt:
        """Load and encode a voice prompt once: log-mel of the original and denoised rows, peak, F0 (with an extractor).

        Pass the result instead of the audio to many calls; it is only denoised when ``denoise_ratio > 0``.
        """
        denoise_ratio = self._check_ratio(self.denoise_ratio if denoise_ratio is None else denoise_ratio)
        self._check_denoiser(denoise_ratio)
        prompt = check_peak(as_waveform(audio, sample_rate, "voice prompt"), "voice prompt")
        seconds = prompt.numel() / SAMPLE_RATE
        if seconds < MIN_PROMPT_SECONDS:
            raise AudioError(
                f"voice prompt is {seconds:.2f} s long; give at least {MIN_PROMPT_SECONDS} s of speech (3–10 s works best)"
            )
        f0 = None if f0_extractor is None else f0_extractor(prompt).reshape(-1).cpu().numpy()
        if denoise_ratio > 0:
            padded = pad_to_multiple(prompt, PROMPT_MULTIPLE)
            device, dtype = _device_of(self.denoiser), _dtype_of(self.denoiser)
            denoised = self.denoiser(padded.unsqueeze(0).to(device, dtype)).reshape(-1)[: prompt.numel()]
        else:
            denoised = prompt
        rows = torch.stack([prompt, denoised.float().cpu()])
        mel = self.mel(rows.to(next(iter(self.mel.buffers())).device))
        return Prompt(mel=mel, peak=float(prompt.abs().max()), f0=f0, denoised=denoise_ratio > 0)

    def _prompt_rows(self, prompts: Sequence[Prompt]) -> tuple[Tensor, Tensor]:
        """Prompts → interleaved rows [2B, 80, T_max] (zero-padded) and their lengths [2B]."""
        device, dtype = _device_of(self.backbone), _dtype_of(self.backbone)
        frames = max(p.mel.shape[-1] for p in prompts)
        mel = torch.cat([nn.functional.pad(p.mel, (0, frames - p.mel.shape[-1])) for p in prompts])
        lengths = torch.tensor([p.mel.shape[-1] for p in prompts for _ in range(2)], device=device)
        return mel.to(device, dtype), lengths

    def _render_rows(
        self,
        semantic: Tensor,
        log_f0: Tensor,
        prompts: Sequence[Prompt],
        noise_scale: float,
        denoise_ratio: float,
    ) -> Tensor:
        """Semantic [B, C, T] + log F0 [B, 1, 4T] + one prompt per row → waveform [B, ratio · 320 T] (CPU, float32)."""
        device, dtype = _device_of(self.backbone), _dtype_of(self.backbone)
        prompt_mel, prompt_lengths = self._prompt_rows(prompts)
        lengths = torch.full((semantic.shape[0],), semantic.shape[-1], dtype=torch.long, device=device)
        wav = self.backbone.voice_conversion(
            semantic.to(device, dtype),
            lengths,
            prompt_mel,
            prompt_lengths,
            log_f0.to(device, dtype),
            noise_scale=noise_scale,
            denoise_ratio=denoise_ratio,
        )
        if self.output_rate != SAMPLE_RATE:
            wav = self.speechsr(wav.to(_device_of(self.speechsr), _dtype_of(self.speechsr)))
        return wav[:, 0].float().cpu()

    def _peak_for(self, prompt: Prompt) -> float:
        return prompt.peak if self.scale_norm == "prompt" else PEAK


class _PromptCache:
    """Prompts by file path within one call, so a prompt shared by many jobs is encoded once."""

    def __init__(
        self, encode: Callable[[AudioInput, int | None], Prompt], denoise_ratio: float, needs_f0: bool
    ) -> None:
        self.encode = encode
        self.denoise_ratio = denoise_ratio
        self.needs_f0 = needs_f0
        self.cache: dict[str, Prompt | BaseException] = {}

    def get(self, audio: AudioInput, sample_rate: int | None) -> Prompt:
        audio, sample_rate = _with_rate(audio, sample_rate)
        if isinstance(audio, Prompt):
            if self.denoise_ratio > 0 and not audio.denoised:
                raise ValueError(
                    f"this Prompt was encoded without denoising, so denoise_ratio={self.denoise_ratio} would "
                    "mix it with itself; encode it with encode_prompt(audio, denoise_ratio=...) or pass 0"
                )
            if self.needs_f0 and audio.f0 is None:
                raise ValueError(
                    "voice conversion needs the prompt's F0: encode it with VoiceConversion.encode_prompt"
                )
            return audio
        if not isinstance(audio, (str, os.PathLike)):
            return self.encode(audio, sample_rate)
        key = os.fspath(audio)
        if key not in self.cache:
            try:
                self.cache[key] = self.encode(audio, sample_rate)
            except _JOB_ERRORS as error:
                self.cache[key] = error
        cached = self.cache[key]
        if isinstance(cached, BaseException):
            raise cached
        return cached


class VoiceConversion(_Synthesis):
    """Zero-shot voice conversion: the words and melody of ``source`` in the voice of ``target``.

    Sources longer than one window of ``chunk_plan`` (23 s by default) are converted in overlapping
    windows with cross-fades; the F0 statistics moved to the prompt's are those of the whole source.

    Args:
        backbone, semantic_encoder, speechsr: the models (``speechsr`` for 24/48 kHz output).
        denoiser: MP-SENet prompt denoiser; with one, ``denoise_ratio`` defaults to the official 0.8.
        output_rate: 16000, or the SpeechSR's rate (default).
        noise_scale: prior noise of the backbone (0: deterministic).
        denoise_ratio: weight of the denoised prompt's style (default of every call); prompt audio is
            denoised with ``denoiser``, an encoded :class:`Prompt` brings its denoised row.
        scale_norm: "max" (peak 0.999, official), "prompt" (the prompt's peak) or "none".
        f0_extractor: F0 of the source and prompt: a name from :data:`~hierspeech2.pitch.F0_METHODS`
            ("yaapt", official and the default; "swift" or "praat", about 10× faster) or a callable
            ``[N] → Hz [N / 80]``.
        chunk_plan, batch_size: window geometry, and windows per model call.
    """

    def __init__(
        self,
        backbone: HierSpeech2,
        semantic_encoder: SemanticEncoder,
        speechsr: SpeechSR | None = None,
        denoiser: nn.Module | None = None,
        output_rate: int | None = None,
        noise_scale: float = 0.333,
        denoise_ratio: float | None = None,
        scale_norm: ScaleNorm = "max",
        f0_extractor: F0Extractor | str = "yaapt",
        chunk_plan: ChunkPlan = VC_CHUNKS,
        batch_size: int = 1,
    ) -> None:
        super().__init__(
            backbone, speechsr, denoiser, output_rate or _default_rate(speechsr), scale_norm, denoise_ratio
        )
        if chunk_plan.multiple % SOURCE_MULTIPLE:
            raise ValueError(
                f"voice conversion windows must align to {SOURCE_MULTIPLE} samples, got {chunk_plan}"
            )
        self.semantic_encoder = semantic_encoder.eval()
        self.noise_scale = noise_scale
        self.f0_extractor = inference_f0_extractor(f0_extractor)
        self.chunk_plan = chunk_plan
        self.batch_size = batch_size

    def encode_prompt(
        self, audio: AudioInput, sample_rate: int | None = None, denoise_ratio: float | None = None
    ) -> Prompt:
        """Load and encode a voice prompt once, with its F0 (see :meth:`_Synthesis.encode_prompt`)."""
        return super().encode_prompt(audio, sample_rate, denoise_ratio, f0_extractor=self.f0_extractor)

    @inference
    def __call__(
        self,
        source: AudioInput,
        target: AudioInput | Prompt,
        *,
        source_rate: int | None = None,
        target_rate: int | None = None,
        noise_scale: float | None = None,
        denoise_ratio: float | None = None,
        seed: int | None = None,
    ) -> tuple[Tensor, int]:
        """Convert ``source`` to the voice of ``target`` → ``(waveform [N], output_rate)``."""
        (result,) = self._run(
            [(source, source_rate, target, target_rate, None)],
            noise_scale,
            denoise_ratio,
            seed,
            raise_errors=True,
        )
        return result.audio, self.output_rate

    @inference
    def convert_file(
        self,
        source: AudioInput,
        target: AudioInput | Prompt,
        output: str | os.PathLike,
        *,
        noise_scale: float | None = None,
        denoise_ratio: float | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> Path:
        """Convert into ``output`` (format by extension), streaming: memory does not grow with the source."""
        (result,) = self._run(
            [(source, None, target, None, output)],
            noise_scale,
            denoise_ratio,
            seed,
            raise_errors=True,
            progress=progress,
        )
        return result.path

    @inference
    def convert_many(
        self,
        jobs: Sequence[tuple[AudioInput, AudioInput | Prompt, str | os.PathLike | None]],
        *,
        noise_scale: float | None = None,
        denoise_ratio: float | None = None,
        seed: int | None = None,
        progress: bool = False,
    ) -> list[Result]:
        """``(source, target, output path or None)`` triples → one :class:`Result` each, batching equal-length windows.

        Sources and targets are file paths, ``(waveform, sample_rate)`` pairs or (targets) encoded
        :class:`Prompt` s. A job that fails (unreadable file, short prompt …) is reported in its
        result; the others complete.
        """
        items = [(source, None, target, None, output) for source, target, output in jobs]
        return self._run(items, noise_scale, denoise_ratio, seed, raise_errors=False, progress=progress)

    def _run(
        self, items, noise_scale, denoise_ratio, seed, raise_errors: bool, progress: bool = False
    ) -> list[Result]:
        noise_scale = check_scale("noise_scale", self.noise_scale if noise_scale is None else noise_scale)
        denoise_ratio = self._check_ratio(self.denoise_ratio if denoise_ratio is None else denoise_ratio)
        if not all(isinstance(item[2], Prompt) for item in items):
            self._check_denoiser(denoise_ratio)
        prompts = _PromptCache(
            lambda audio, rate: self.encode_prompt(audio, rate, denoise_ratio), denoise_ratio, needs_f0=True
        )
        jobs = []
        for index, (source, source_rate, target, target_rate, output) in enumerate(items):
            job = _Job(index, result=Result(sample_rate=self.output_rate))
            try:
                self._prepare(job, source, source_rate, prompts.get(target, target_rate), output)
            except _JOB_ERRORS as error:
                if raise_errors:
                    raise
                job.fail(error)
            jobs.append(job)
        with seeded(seed):
            _run_windows(
                jobs,
                lambda group: self._render(group, noise_scale, denoise_ratio),
                self.ratio,
                self.batch_size,
                progress,
            )
        return _results(jobs, raise_errors)

    def _prepare(
        self, job: _Job, source: AudioInput, source_rate: int | None, prompt: Prompt, output: Any
    ) -> None:
        reader = _reader(source, source_rate, "source")
        job.sink = _sink(output, self.output_rate, self.scale_norm, self._peak_for(prompt))
        total = (reader.num_samples // SOURCE_MULTIPLE + 1) * SOURCE_MULTIPLE  # official padding
        job.windows = self.chunk_plan.windows(total)
        # F0 of the whole source, window by window (each window keeps its own core frames)
        source_f0 = np.zeros(total // F0_HOP, dtype=np.float32)
        for window in job.windows:
            f0 = self.f0_extractor(reader.read(window.start, window.end)).reshape(-1).cpu().numpy()
            first, last = window.core_start // F0_HOP, window.core_end // F0_HOP
            offset = window.start // F0_HOP
            source_f0[first:last] = f0[first - offset : last - offset]
        job.state.update(reader=reader, prompt=prompt, log_f0=transfer_log_f0(source_f0, prompt.f0))
        job.fader = CrossFader(round(self.chunk_plan.crossfade * self.ratio))
        job.remaining = len(job.windows)

    def _render(self, group: list[tuple[_Job, Window]], noise_scale: float, denoise_ratio: float) -> Tensor:
        wav = check_peak(
            torch.stack([job.state["reader"].read(w.start, w.end) for job, w in group]), "source"
        )
        semantic = self.semantic_encoder(wav.to(_device_of(self.semantic_encoder)))
        log_f0 = torch.stack(
            [job.state["log_f0"][w.start // F0_HOP : w.end // F0_HOP] for job, w in group]
        ).unsqueeze(1)
        prompts = [job.state["prompt"] for job, _ in group]
        return self._render_rows(semantic, log_f0, prompts, noise_scale, denoise_ratio)


@dataclass
class _PieceJob:
    job: _Job
    piece: Piece
    tokens: Tensor
    last: bool


class TextToSpeech(_Synthesis):
    """Zero-shot TTS: TextToVec (text → semantic + F0) → HierSpeech2 backbone → optional SpeechSR.

    Text of any length is split into pieces (:func:`~hierspeech2.text.segment.split_text`) that are
    spoken from one prompt encoding and joined with short pauses; ``batch_size`` pieces go through
    the text-to-vec model at once (padded; each row equals the piece alone), and pieces of equal
    length through the backbone.
    """

    def __init__(
        self,
        ttv: TextToVec,
        backbone: HierSpeech2,
        speechsr: SpeechSR | None = None,
        denoiser: nn.Module | None = None,
        output_rate: int | None = None,
        noise_scale_ttv: float = 0.333,
        noise_scale_vc: float = 0.333,
        noise_scale_w: float = 1.0,
        length_scale: float = 1.0,
        denoise_ratio: float | None = None,
        scale_norm: ScaleNorm = "max",
        max_piece_chars: int = MAX_PIECE_CHARS,
        batch_size: int = 8,
    ) -> None:
        super().__init__(
            backbone, speechsr, denoiser, output_rate or _default_rate(speechsr), scale_norm, denoise_ratio
        )
        self.ttv = ttv.eval()
        self.max_piece_chars = max_piece_chars
        self.batch_size = batch_size
        self.defaults = {
            "noise_scale_ttv": noise_scale_ttv,
            "noise_scale_vc": noise_scale_vc,
            "noise_scale_w": noise_scale_w,
            "length_scale": length_scale,
            "denoise_ratio": self.denoise_ratio,
        }

    def _options(self, settings: dict[str, float]) -> dict[str, float]:
        unknown = settings.keys() - self.defaults.keys()
        if unknown:
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        options = {**self.defaults, **{k: v for k, v in settings.items() if v is not None}}
        options["denoise_ratio"] = self._check_ratio(options["denoise_ratio"])
        return options

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
        (result,) = self._run(
            [(text, prompt, prompt_rate, None)], seed, progress, settings, raise_errors=True
        )
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
        """Speak ``text`` into ``output`` (format by extension), piece by piece: memory does not grow with the text."""
        (result,) = self._run(
            [(text, prompt, prompt_rate, output)], seed, progress, settings, raise_errors=True
        )
        return result.path

    @inference
    def synthesize_many(
        self,
        jobs: Sequence[tuple[str, AudioInput | Prompt, str | os.PathLike | None]],
        *,
        seed: int | None = None,
        progress: bool = False,
        **settings: float,
    ) -> list[Result]:
        """``(text, prompt, output path or None)`` triples → one :class:`Result` each; failures stay per job.

        A prompt is a file path, a ``(waveform, sample_rate)`` pair or an encoded :class:`Prompt`.
        """
        items = [(text, prompt, None, output) for text, prompt, output in jobs]
        return self._run(items, seed, progress, settings, raise_errors=False)

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
        """Token ids ``[L]``/``[1, L]`` + prompt log-mel ``[2, 80, T]`` → final waveform ``[N]`` at ``output_rate``.

        The rows of ``prompt_mel`` are the original and the denoised prompt; their styles are mixed by
        ``denoise_ratio`` (no denoiser needed). Settings left at None take the constructor's values, as in ``__call__``.
        """
        options = self._options(
            {
                "noise_scale_ttv": noise_scale_ttv,
                "noise_scale_vc": noise_scale_vc,
                "noise_scale_w": noise_scale_w,
                "length_scale": length_scale,
                "denoise_ratio": denoise_ratio,
            }
        )
        prompt = Prompt(mel=prompt_mel, peak=prompt_peak, denoised=True)
        (audio,) = self._speak(tokens.reshape(1, -1), [prompt], **options)
        sink = MemorySink(self.scale_norm, self._peak_for(prompt))
        sink.write(audio)
        return sink.close()

    def _run(
        self, items, seed, progress: bool, settings: dict[str, float], raise_errors: bool
    ) -> list[Result]:
        options = self._options(settings)
        ratio = options["denoise_ratio"]
        if not all(isinstance(item[1], Prompt) for item in items):
            self._check_denoiser(ratio)
        prompts = _PromptCache(
            lambda audio, rate: self.encode_prompt(audio, rate, ratio), ratio, needs_f0=False
        )
        jobs, pieces = [], []
        for index, (text, prompt, prompt_rate, output) in enumerate(items):
            job = _Job(index, result=Result(sample_rate=self.output_rate))
            jobs.append(job)
            try:
                encoded = prompts.get(prompt, prompt_rate)
                job.state["prompt"] = encoded
                job_pieces = self._pieces(text)
                job.sink = _sink(output, self.output_rate, self.scale_norm, self._peak_for(encoded))
            except _JOB_ERRORS as error:
                if raise_errors:
                    raise
                job.fail(error)
                continue
            job.remaining = len(job_pieces)
            job.state["fade"] = len(job_pieces) > 1
            pieces.extend(
                _PieceJob(job, piece, tokens, i == len(job_pieces) - 1)
                for i, (piece, tokens) in enumerate(job_pieces)
            )
        with seeded(seed), _progress(len(pieces), progress, "piece", "speaking") as bar:
            for start in range(0, len(pieces), self.batch_size):
                wave = [p for p in pieces[start : start + self.batch_size] if not p.job.failed]
                for item, audio in zip(
                    wave, _guarded(lambda group: self._speak_pieces(group, options), wave)
                ):
                    if isinstance(audio, BaseException):
                        item.job.fail(audio)
                    elif not item.job.failed:
                        self._push_piece(item, audio)
                bar.update(len(wave))
        return _results(jobs, raise_errors)

    def _pieces(self, text: str) -> list[tuple[Piece, Tensor]]:
        if not isinstance(text, str):
            raise TextError(f"text must be a str, got {type(text).__name__}")
        pieces = split_text(text, self.max_piece_chars)
        if len(pieces) <= 1:  # one piece: the text reaches the front end unchanged
            return [(pieces[0] if pieces else Piece(text, 0.0), text_to_tokens(text))]
        tokenised, failures = [], []
        with warnings.catch_warnings(record=True) as dropped:
            warnings.simplefilter("always")
            for piece in pieces:
                try:
                    tokenised.append((piece, text_to_tokens(piece.text)))
                except TextError as error:
                    failures.append(str(error))
        if dropped:  # one summary instead of one warning per piece of a book
            warnings.warn(
                f"{len(dropped)} of {len(pieces)} pieces lost symbols the model has no id for; first: "
                f"{dropped[0].message}",
                stacklevel=4,
            )
        if failures:
            warnings.warn(
                f"skipped {len(failures)} piece(s) without speakable words: {failures[0]}", stacklevel=4
            )
        if not tokenised:
            raise TextError(f"none of the {len(pieces)} pieces of the text yields phonemes: {failures[0]}")
        return tokenised

    def _speak_pieces(self, group: list[_PieceJob], options: dict[str, float]) -> list[Tensor]:
        lengths = [p.tokens.numel() for p in group]
        tokens = torch.zeros(len(group), max(lengths), dtype=torch.long)
        for row, item in enumerate(group):
            tokens[row, : lengths[row]] = item.tokens
        return self._speak(tokens, [p.job.state["prompt"] for p in group], token_lengths=lengths, **options)

    def _speak(
        self,
        tokens: Tensor,
        prompts: Sequence[Prompt],
        *,
        token_lengths: Sequence[int] | None = None,
        noise_scale_ttv: float,
        noise_scale_vc: float,
        noise_scale_w: float,
        length_scale: float,
        denoise_ratio: float,
    ) -> list[Tensor]:
        """Token rows [B, L] (zero-padded) → one waveform per row, unnormalised; TTV batched, backbone by length."""
        noise_scale_ttv = check_scale("noise_scale_ttv", noise_scale_ttv)
        noise_scale_vc = check_scale("noise_scale_vc", noise_scale_vc)
        noise_scale_w = check_scale("noise_scale_w", noise_scale_w)
        length_scale = check_scale("length_scale", length_scale, positive=True)
        denoise_ratio = self._check_ratio(denoise_ratio)
        device = _device_of(self.ttv)
        token_lengths = token_lengths or [tokens.shape[-1]] * tokens.shape[0]
        prompt_mel, prompt_lengths = self._prompt_rows(prompts)
        semantic, log_f0, frames = self.ttv.infer_with_lengths(
            tokens.to(device),
            torch.tensor(token_lengths, device=device),
            prompt_mel.to(device, _dtype_of(self.ttv)),
            prompt_lengths.to(device),
            noise_scale=noise_scale_ttv,
            noise_scale_w=noise_scale_w,
            length_scale=length_scale,
            denoise_ratio=denoise_ratio,
        )
        log_f0 = log_f0.masked_fill(log_f0 < math.log(PITCH_FLOOR_HZ), 0.0)
        frames = frames.tolist()
        audio: list[Tensor | None] = [None] * len(frames)
        for rows in _equal_length_groups(range(len(frames)), lambda row: frames[row], len(frames)):
            length = frames[rows[0]]
            out = self._render_rows(
                semantic[rows, :, :length],
                log_f0[rows, :, : 4 * length],
                [prompts[r] for r in rows],
                noise_scale_vc,
                denoise_ratio,
            )
            for row, wav in zip(rows, out):
                audio[row] = wav
        return audio

    def _push_piece(self, item: _PieceJob, audio: Tensor) -> None:
        job = item.job
        if job.state["fade"]:
            edge = min(round(PIECE_EDGE_FADE_SECONDS * self.output_rate), audio.numel() // 2)
            ramp = fade_in_weights(edge, audio)
            audio = audio.clone()
            audio[:edge] *= ramp
            audio[audio.numel() - edge :] *= ramp.flip(0)
        job.sink.write(audio)
        if not item.last:
            job.sink.write(audio.new_zeros(round(item.piece.pause * self.output_rate)))
        job.remaining -= 1
        if job.remaining == 0:
            job.finish()


def _default_rate(speechsr: SpeechSR | None) -> int:
    return SAMPLE_RATE if speechsr is None else int(speechsr.output_rate)
