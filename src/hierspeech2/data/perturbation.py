"""NANSY-style information perturbation for the backbone's perturbed semantic path (``enc_p_l``).

HierSpeech++ feeds the perturbed prior encoder MMS features of audio whose voice has been
disguised, so that the features it learns from carry content, not timbre. The recipe is NANSY's
(Choi et al., 2021): a formant shift, a pitch shift with a pitch-range change, and a random
parametric equaliser, then peak normalisation. NANSY (and the authors' code lineage) call Praat's
"Change Gender"; here both shifts happen in one STFT pass, vectorised in torch over the batch:

* every frame's log magnitude is split into a smooth spectral envelope (cepstral liftering) and
  the fine (harmonic) structure;
* the envelope is read at ``f / formant_ratio`` (formants move, harmonics do not) and the fine
  structure at ``f / pitch_ratio_t`` (harmonics move, formants do not);
* phases follow a phase vocoder: each bin's instantaneous frequency is read at the same
  position, scaled by the pitch ratio and integrated over frames.

With both ratios at 1 the signal comes back unchanged (up to STFT round-off). The pitch-range
change needs a per-frame F0, estimated here from the cepstrum the envelope already uses.
Choices that are ours, not NANSY's, are arguments (see :class:`Perturbation`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hierspeech2.constants import MODEL_SAMPLE_RATE

__all__ = [
    "Perturbation",
    "biquad_coefficients",
    "biquad_response",
    "cepstral_f0",
    "parametric_eq",
    "random_ratio",
    "shift_formants_and_pitch",
    "spectral_envelope",
]

LOG_FLOOR = 1e-7  # magnitude floor before the log: digital silence stays finite
# Cepstral F0: a frame is voiced when its cepstral peak in the pitch range exceeds this
# (natural-log magnitudes; speech vowels peak at 0.1-0.5, noise and silence stay below ~0.05).
CEPSTRAL_VOICING_THRESHOLD = 0.08
# Pitch-range change: frames whose cepstral F0 is this far from the row's median, or this many
# (power) decades quieter than its loudest frame, are treated as unvoiced.
RANGE_OUTLIER_RATIO = 1.8
QUIET_DECADES = 4.0
EQ_PADDING_S = 0.25  # the EQ is applied as one FFT; this much zero padding absorbs its ringing


def random_ratio(
    max_ratio: float,
    shape: tuple[int, ...],
    invert_probability: float = 0.5,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """NANSY's ratio draw: ``U(1, max_ratio)``, inverted with ``invert_probability`` → [*shape]."""
    if max_ratio < 1:
        raise ValueError(f"max_ratio must be >= 1 (1 = no change), got {max_ratio}")
    ratio = 1 + (max_ratio - 1) * torch.rand(shape, generator=generator, device=device)
    invert = torch.rand(shape, generator=generator, device=device) < invert_probability
    return torch.where(invert, 1 / ratio, ratio)


# ---------------------------------------------------------------------------------- spectra


def _interp_bins(values: Tensor, positions: Tensor) -> Tensor:
    """Linear interpolation of ``values`` [B, F, T] at fractional bins ``positions`` [B, F, T] (clamped)."""
    last = values.shape[1] - 1
    positions = positions.clamp(0, last)
    low = positions.floor().long()
    high = (low + 1).clamp_max(last)
    weight = positions - low
    return torch.lerp(values.gather(1, low), values.gather(1, high), weight)


def spectral_envelope(log_magnitude: Tensor, lifter: int, iterations: int = 0) -> Tensor:
    """Smooth log envelope of each frame from its first ``lifter`` cepstral coefficients.

    [B, F, T] → [B, F, T].

    ``iterations > 0`` makes it a "true envelope" (Röbel & Rodet, 2005): smoothing is repeated on
    ``max(log magnitude, envelope)``, so the envelope rides on the harmonic peaks instead of
    averaging peaks and valleys, and bridges the gap below F0 at the first harmonic's level
    (what a lowered pitch's new fundamental needs).
    """
    n_fft = 2 * (log_magnitude.shape[1] - 1)
    keep = torch.zeros(n_fft, device=log_magnitude.device, dtype=log_magnitude.dtype)
    keep[:lifter] = 1
    keep[n_fft - lifter + 1 :] = 1  # the cepstrum of a real spectrum is symmetric

    def smooth(values: Tensor) -> Tensor:  # [B, T, F]: transforms along the contiguous axis
        return torch.fft.rfft(torch.fft.irfft(values, n=n_fft) * keep, n=n_fft).real

    frames = log_magnitude.transpose(1, 2).contiguous()
    envelope = smooth(frames)
    for _ in range(iterations):
        envelope = smooth(torch.maximum(frames, envelope))
    return envelope.transpose(1, 2)


def cepstral_f0(
    log_magnitude: Tensor,
    sample_rate: int,
    f0_min: float = 60.0,
    f0_max: float = 500.0,
    threshold: float = CEPSTRAL_VOICING_THRESHOLD,
) -> Tensor:
    """Rough per-frame F0 in Hz (0 = unvoiced) from the real cepstrum's peak: [B, F, T] → [B, T]."""
    n_fft = 2 * (log_magnitude.shape[1] - 1)
    cepstrum = torch.fft.irfft(log_magnitude.transpose(1, 2), n=n_fft)  # [B, T, n_fft]
    low = max(1, int(sample_rate / f0_max))
    high = min(n_fft // 2, math.ceil(sample_rate / f0_min))
    peak, index = cepstrum[..., low:high].max(dim=-1)
    f0 = sample_rate / (index + low).to(cepstrum.dtype)
    return torch.where(peak > threshold, f0, torch.zeros_like(f0))


def _pitch_ratio_contour(
    log_magnitude: Tensor, pitch_ratio: Tensor, pitch_range: Tensor, sample_rate: int
) -> Tensor:
    """Per-frame pitch ratio [B, T]: median F0 × ``pitch_ratio``, deviations from it × ``pitch_range``.

    Deviations are scaled in log frequency (semitones): Praat scales them in Hz, which can
    turn F0 negative for a range above 1. Unvoiced frames take the voiced neighbours' ratio.
    """
    ratio = pitch_ratio[:, None].expand(-1, log_magnitude.shape[-1])
    if bool((pitch_range == 1).all()):
        return ratio
    f0 = cepstral_f0(log_magnitude, sample_rate)
    log_f0 = torch.where(f0 > 0, f0.clamp_min(1.0).log(), torch.full_like(f0, float("nan")))
    median = log_f0.nanmedian(dim=1).values.nan_to_num(0.0)
    # the cepstral tracker mistakes some unvoiced frames for voiced ones at random pitches; keep
    # frames near the median and with energy, which is where the range change matters anyway
    energy = log_magnitude.exp().pow(2).sum(dim=1).clamp_min(1e-12).log()
    loud = energy > energy.amax(dim=1, keepdim=True) - math.log(10**QUIET_DECADES)
    voiced = (log_f0 - median[:, None]).abs().nan_to_num(math.inf) < math.log(RANGE_OUTLIER_RATIO)
    voiced = voiced & loud
    log_f0 = torch.where(voiced, log_f0, torch.full_like(log_f0, float("nan")))
    median = log_f0.nanmedian(dim=1).values.nan_to_num(0.0)
    log_factor = (pitch_range[:, None] - 1) * (log_f0 - median[:, None])
    # at most one octave up or down from the median shift, whatever the F0 tracker did
    log_factor = log_factor.clamp(-math.log(2), math.log(2)).nan_to_num(0.0)
    # smooth over ~5 frames so tracking errors do not click, spreading ratios into unvoiced gaps
    weights = voiced.to(log_factor.dtype)
    kernel = log_factor.new_ones(1, 1, 5)
    smoothed = F.conv1d((log_factor * weights)[:, None], kernel, padding=2)[:, 0]
    counts = F.conv1d(weights[:, None], kernel, padding=2)[:, 0]
    log_factor = torch.where(counts > 0, smoothed / counts.clamp_min(1e-6), torch.zeros_like(smoothed))
    return ratio * log_factor.exp()


def shift_formants_and_pitch(
    wav: Tensor,
    formant_ratio: Tensor | float,
    pitch_ratio: Tensor | float,
    pitch_range: Tensor | float = 1.0,
    *,
    sample_rate: int = MODEL_SAMPLE_RATE,
    n_fft: int = 1024,
    hop_length: int = 256,
    lifter: int = 30,
    envelope_iterations: int = 16,
) -> Tensor:
    """Move formants by ``formant_ratio`` and F0 by ``pitch_ratio`` independently; [B, N] → [B, N].

    Ratios are floats or per-row tensors [B]. ``pitch_range`` scales each frame's F0 deviation
    from the row's median (1 = unchanged contour). ``lifter`` (cepstral coefficients kept for the
    envelope) must stay below the shortest pitch period in samples (30 at 16 kHz: F0 < 530 Hz).
    """
    if wav.ndim != 2:
        raise ValueError(f"expected audio [B, N], got shape {tuple(wav.shape)}")
    batch, length = wav.shape
    compute = torch.promote_types(wav.dtype, torch.float32)
    x = wav.to(compute)

    def per_row(value: Tensor | float) -> Tensor:
        return torch.as_tensor(value, dtype=compute, device=x.device).expand(batch).clone()

    formant_ratio, pitch_ratio, pitch_range = map(per_row, (formant_ratio, pitch_ratio, pitch_range))
    window = torch.hann_window(n_fft, dtype=compute, device=x.device)
    spec = torch.stft(x, n_fft, hop_length, window=window, return_complex=True)  # [B, F, T]
    log_magnitude = spec.abs().clamp_min(LOG_FLOOR).log()
    envelope = spectral_envelope(log_magnitude, lifter, envelope_iterations)
    fine = log_magnitude - envelope
    ratio = _pitch_ratio_contour(log_magnitude, pitch_ratio, pitch_range, sample_rate)  # [B, T]

    bins = torch.arange(spec.shape[1], dtype=compute, device=x.device)[None, :, None]
    envelope_at = (bins / formant_ratio[:, None, None]).expand_as(envelope)
    fine_at = bins / ratio[:, None, :]
    shifted = _interp_bins(envelope, envelope_at) + _interp_bins(fine, fine_at)

    # phase vocoder: instantaneous frequency (radians per hop) of each bin, read at the source
    # bin and scaled by the ratio, integrated over frames from the source's first phase
    phase = spec.angle()
    expected = 2 * math.pi * hop_length * bins / n_fft
    deviation = torch.remainder(phase.diff(dim=-1) - expected + math.pi, 2 * math.pi) - math.pi
    advance = F.pad(expected + deviation, (1, 0))  # frame 0 starts from its own phase
    advance = ratio[:, None, :] * _interp_bins(advance, fine_at)
    start = _interp_bins(phase[..., :1], fine_at[..., :1])
    new_phase = start + torch.cumsum(advance.double(), dim=-1).to(compute)

    out_spec = torch.polar(shifted.exp(), new_phase)
    out = torch.istft(out_spec, n_fft, hop_length, window=window, length=length)
    return out.to(wav.dtype)


# ---------------------------------------------------------------------------------- equaliser


def biquad_coefficients(
    kind: str, frequency: Tensor, gain_db: Tensor, q: Tensor, sample_rate: int
) -> tuple[Tensor, Tensor]:
    """RBJ Audio-EQ-Cookbook biquads, vectorised: parameters [...] → (b [..., 3], a [..., 3]), a0 = 1.

    ``kind``: ``"peaking"``, ``"lowshelf"`` or ``"highshelf"`` (shelves with the cookbook's Q form).
    """
    amplitude = torch.pow(10.0, gain_db / 40)
    omega = 2 * math.pi * frequency / sample_rate
    cos, alpha = torch.cos(omega), torch.sin(omega) / (2 * q)
    if kind == "peaking":
        b = torch.stack([1 + alpha * amplitude, -2 * cos, 1 - alpha * amplitude], -1)
        a = torch.stack([1 + alpha / amplitude, -2 * cos, 1 - alpha / amplitude], -1)
    elif kind in ("lowshelf", "highshelf"):
        sign = 1 if kind == "lowshelf" else -1
        root = 2 * amplitude.sqrt() * alpha
        plus, minus = amplitude + 1, amplitude - 1
        b = amplitude[..., None] * torch.stack(
            [
                plus - sign * minus * cos + root,
                sign * 2 * (minus - sign * plus * cos),
                plus - sign * minus * cos - root,
            ],
            -1,
        )
        a = torch.stack(
            [
                plus + sign * minus * cos + root,
                -sign * 2 * (minus + sign * plus * cos),
                plus + sign * minus * cos - root,
            ],
            -1,
        )
    else:
        raise ValueError(f"unknown biquad kind {kind!r}; use 'peaking', 'lowshelf' or 'highshelf'")
    return b / a[..., :1], a / a[..., :1]


def biquad_response(b: Tensor, a: Tensor, n_fft: int) -> Tensor:
    """Complex frequency response of biquads (b, a [..., 3]) at the ``n_fft // 2 + 1`` rfft bins.

    → [..., F]
    """
    omega = torch.linspace(0, math.pi, n_fft // 2 + 1, dtype=b.dtype, device=b.device)
    delays = torch.polar(torch.ones_like(omega), -omega)  # e^{-jω}
    powers = torch.stack([torch.ones_like(delays), delays, delays * delays])  # [3, F]
    return (b.to(powers.dtype) @ powers) / (a.to(powers.dtype) @ powers)


def parametric_eq(
    wav: Tensor,
    frequency: Tensor,
    gain_db: Tensor,
    q: Tensor,
    kinds: tuple[str, ...],
    sample_rate: int = MODEL_SAMPLE_RATE,
) -> Tensor:
    """A cascade of biquads, one set per row: ``wav`` [B, N], parameters [B, K], ``kinds`` K names → [B, N].

    Applied as one (zero-padded) FFT of each row: the IIR filters' exact response, without a
    sample-by-sample recursion.
    """
    if wav.ndim != 2:
        raise ValueError(f"expected audio [B, N], got shape {tuple(wav.shape)}")
    if not frequency.shape == gain_db.shape == q.shape == (wav.shape[0], len(kinds)):
        raise ValueError(
            f"frequency, gain_db and q must be [B, K] = {(wav.shape[0], len(kinds))} for {len(kinds)} kinds, "
            f"got {tuple(frequency.shape)}, {tuple(gain_db.shape)}, {tuple(q.shape)}"
        )
    compute = torch.promote_types(wav.dtype, torch.float32)
    length = wav.shape[-1]
    n_fft = 2 ** math.ceil(math.log2(length + int(EQ_PADDING_S * sample_rate)))
    response = wav.new_ones(
        wav.shape[0], n_fft // 2 + 1, dtype=torch.complex64 if compute == torch.float32 else torch.complex128
    )
    for index, kind in enumerate(kinds):
        b, a = biquad_coefficients(
            kind,
            frequency[:, index].to(compute),
            gain_db[:, index].to(compute),
            q[:, index].to(compute),
            sample_rate,
        )
        response = response * biquad_response(b, a, n_fft)
    out = torch.fft.irfft(torch.fft.rfft(wav.to(compute), n=n_fft) * response, n=n_fft)[:, :length]
    return out.to(wav.dtype)


# ---------------------------------------------------------------------------------- the transform


class Perturbation(nn.Module):
    """Random formant shift, pitch shift and parametric EQ, then peak normalisation: [N] or [B, N] → same.

    Each row draws its own parameters. Defaults are NANSY's (as DESIGN.md lists them for
    HierSpeech++): formant ratio ``U(1, 1.4)``, pitch ratio ``U(1, 2)``, pitch range ratio
    ``U(1, 1.5)``, each inverted with probability 0.5; ``eq_peaks`` peaking filters at
    log-spaced frequencies strictly inside (``eq_min_hz``, ``eq_max_hz``) with a low shelf at
    ``eq_min_hz`` and a high shelf at ``eq_max_hz``; every filter's gain ``U(-12, 12)`` dB and
    Q ``q_min (q_max / q_min)^U``.

    Ours, not NANSY's (NANSY runs at 22.05 kHz through Praat): filter frequencies above
    ``max_frequency_fraction`` × Nyquist are lowered to it (the 10 kHz high shelf is outside a
    16 kHz signal's band); shelves sample Q like the peaks; the output is rescaled to the
    input's peak (``peak=None``) or to a fixed ``peak``; the STFT analysis (``n_fft``,
    ``hop_length``, ``lifter``) and the log-frequency pitch-range change of
    :func:`shift_formants_and_pitch`.

    Randomness comes from torch's global generator (seeded per DataLoader worker, and restored
    when a training run resumes) unless ``seed`` is given, which starts a generator of its own
    (reproducible draws; it restarts from the seed when a run resumes). Works in data workers
    (``BackboneDataModule(perturb=...)``) or on the training device over a whole batch
    (``HierSpeech2Task(perturbation=...)``).
    """

    def __init__(
        self,
        sample_rate: int = MODEL_SAMPLE_RATE,
        formant_shift: float = 1.4,
        pitch_shift: float = 2.0,
        pitch_range: float = 1.5,
        invert_probability: float = 0.5,
        eq_peaks: int = 8,
        eq_min_hz: float = 60.0,
        eq_max_hz: float = 10_000.0,
        eq_gain_db: float = 12.0,
        q_min: float = 2.0,
        q_max: float = 5.0,
        max_frequency_fraction: float = 0.9,
        peak: float | None = None,
        n_fft: int = 1024,
        hop_length: int = 256,
        lifter: int = 30,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("formant_shift", formant_shift),
            ("pitch_shift", pitch_shift),
            ("pitch_range", pitch_range),
        ):
            if value < 1:
                raise ValueError(f"{name} is a maximum ratio >= 1 (1 turns it off), got {value}")
        if not 0 < eq_min_hz < eq_max_hz:
            raise ValueError(f"need 0 < eq_min_hz < eq_max_hz, got {eq_min_hz} and {eq_max_hz}")
        if not 0 < q_min <= q_max:
            raise ValueError(f"need 0 < q_min <= q_max, got {q_min} and {q_max}")
        self.sample_rate = sample_rate
        self.formant_shift, self.pitch_shift, self.pitch_range = formant_shift, pitch_shift, pitch_range
        self.invert_probability = invert_probability
        self.eq_gain_db, self.q_min, self.q_max = eq_gain_db, q_min, q_max
        self.peak = peak
        self.n_fft, self.hop_length, self.lifter = n_fft, hop_length, lifter
        self.seed = seed
        self._generator: torch.Generator | None = None
        frequencies = torch.logspace(
            math.log10(eq_min_hz), math.log10(eq_max_hz), eq_peaks + 2, dtype=torch.float64
        )
        frequencies = frequencies.clamp_max(max_frequency_fraction * sample_rate / 2)
        self.eq_kinds = ("lowshelf", *("peaking",) * eq_peaks, "highshelf") if eq_gain_db > 0 else ()
        self.register_buffer("eq_frequencies", frequencies.float(), persistent=False)

    def sample_parameters(self, batch: int, device: torch.device | None = None) -> dict[str, Tensor]:
        """One random draw per row: ratios [B] and EQ ``frequency`` / ``gain_db`` / ``q`` [B, K]."""
        generator = self._rng(device)

        def uniform(*shape: int) -> Tensor:
            return torch.rand(shape, generator=generator, device=device)

        kinds = len(self.eq_kinds)
        return {
            "formant_ratio": random_ratio(
                self.formant_shift, (batch,), self.invert_probability, generator=generator, device=device
            ),
            "pitch_ratio": random_ratio(
                self.pitch_shift, (batch,), self.invert_probability, generator=generator, device=device
            ),
            "pitch_range": random_ratio(
                self.pitch_range, (batch,), self.invert_probability, generator=generator, device=device
            ),
            "frequency": self.eq_frequencies.to(device).expand(batch, kinds),
            "gain_db": self.eq_gain_db * (2 * uniform(batch, kinds) - 1),
            "q": self.q_min * (self.q_max / self.q_min) ** uniform(batch, kinds),
        }

    def _rng(self, device: torch.device | None) -> torch.Generator | None:
        if self.seed is None:
            return None
        device = torch.device("cpu") if device is None else torch.device(device)
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    @torch.no_grad()
    def forward(self, wav: Tensor) -> Tensor:
        """Perturbed audio [N] or [B, N] (same shape and dtype as ``wav``)."""
        single = wav.ndim == 1
        rows = wav[None] if single else wav
        if rows.ndim != 2:
            raise ValueError(f"Perturbation expects audio [N] or [B, N], got shape {tuple(wav.shape)}")
        params = self.sample_parameters(rows.shape[0], rows.device)
        return self.apply(rows, params)[0] if single else self.apply(rows, params)

    @torch.no_grad()
    def apply(self, wav: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The transform with given parameters (see :meth:`sample_parameters`): [B, N] → [B, N]."""
        with torch.autocast(device_type=wav.device.type, enabled=False):
            out = shift_formants_and_pitch(
                wav.float(),
                params["formant_ratio"],
                params["pitch_ratio"],
                params["pitch_range"],
                sample_rate=self.sample_rate,
                n_fft=self.n_fft,
                hop_length=self.hop_length,
                lifter=self.lifter,
            )
            if self.eq_kinds:
                out = parametric_eq(
                    out, params["frequency"], params["gain_db"], params["q"], self.eq_kinds, self.sample_rate
                )
            peak = wav.float().abs().amax(dim=-1, keepdim=True) if self.peak is None else self.peak
            out = out * (peak / out.abs().amax(dim=-1, keepdim=True).clamp_min(1e-8))
        return out.to(wav.dtype)
