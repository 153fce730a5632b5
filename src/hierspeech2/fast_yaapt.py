"""YAAPT with its frame loops batched: AMFM_decompy's pYAAPT (the official F0 extractor), faster,
and equal to it bit for bit.

pYAAPT walks the frames one at a time in Python: an 8192-point FFT and a harmonic product per
voiced frame (spectral track), and per frame of the filtered signal and of its square a normalised
cross-correlation with its peak picking (temporal track). Here the FFTs and harmonic products run
on batches of frames (on torch's threads: numpy's FFT releases the GIL), peak picking is array
operations over all frames, and band-pass filtering, refinement and the dynamic programming are
pYAAPT's own functions with the same parameters.

Bit for bit, because YAAPT's dynamic programming breaks exact ties between candidates by index:
merits that differ in the last bit change the chosen path, and with it F0 on whole stretches (an
FFT-based cross-correlation, 1e-15 off, moved 2 % of the frames of a tone in noise). So each value
is computed by the same arithmetic as in pYAAPT: the same FFT rows, the same pairwise sums over
the same rows, the same BLAS call for each frame's lag products, and the temporal track's mean
removal, which pYAAPT does in place on overlapping frames (each frame sees the means its
predecessors removed), replayed in order.

``tests/test_fast_yaapt.py`` compares it with pYAAPT on speech, noise, tones, digital silence and
other sample rates; ``benchmarks/inference.py`` times the ``f0`` stage against it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided, sliding_window_view
from scipy.interpolate import PchipInterpolator
from scipy.signal import lfilter, medfilt
from scipy.signal.windows import hann, kaiser

from .nn.chunk_threads import run_chunks

__all__ = ["YAAPT_DEFAULTS", "yaapt_parameters", "yaapt_track"]

# pYAAPT's defaults (its yaapt() keyword arguments), which its refine/dynamic/filter helpers read.
YAAPT_DEFAULTS: dict[str, float] = {
    "frame_length": 35.0,
    "tda_frame_length": 35.0,
    "frame_space": 10.0,
    "f0_min": 60.0,
    "f0_max": 400.0,
    "fft_length": 8192,
    "bp_forder": 150,
    "bp_low": 50.0,
    "bp_high": 1500.0,
    "nlfer_thresh1": 0.75,
    "nlfer_thresh2": 0.1,
    "shc_numharms": 3,
    "shc_window": 40.0,
    "shc_maxpeaks": 4,
    "shc_pwidth": 50.0,
    "shc_thresh1": 5.0,
    "shc_thresh2": 1.25,
    "f0_double": 150.0,
    "f0_half": 150.0,
    "dp5_k1": 11.0,
    "dec_factor": 1,
    "nccf_thresh1": 0.3,
    "nccf_thresh2": 0.9,
    "nccf_maxcands": 3,
    "nccf_pwidth": 5,
    "merit_boost": 0.20,
    "merit_pivot": 0.99,
    "merit_extra": 0.4,
    "median_value": 7,
    "dp_w1": 0.15,
    "dp_w2": 0.5,
    "dp_w3": 0.1,
    "dp_w4": 0.9,
    "spec_pitch_min_std": 0.05,
}

# Frames per FFT batch: bounds the complex spectra held at once (256 x 4097 x 16 B = 17 MB).
_FFT_ROWS = 256
# Voiced frames per harmonic-product batch (64 x 584 x 21 x 8 B = 6 MB per harmonic).
_SHC_ROWS = 64


def yaapt_parameters(**settings: float) -> dict[str, float]:
    """pYAAPT's parameter table with ``settings`` (its keyword names) applied."""
    unknown = sorted(set(settings) - set(YAAPT_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown YAAPT setting(s) {unknown}; known: {sorted(YAAPT_DEFAULTS)}")
    return {**YAAPT_DEFAULTS, **settings}


def yaapt_track(signal: np.ndarray, sample_rate: float, **settings: float) -> np.ndarray:
    """F0 per frame (Hz, 0 = unvoiced) of a 1-D float waveform, as ``pYAAPT.yaapt(...).samp_values``."""
    import amfm_decompy.basic_tools as basic
    import amfm_decompy.pYAAPT as pyaapt

    params = yaapt_parameters(**settings)
    speech = basic.SignalObj(signal, sample_rate)
    squared = basic.SignalObj(signal**2, sample_rate)  # the "nonlinear" signal of YAAPT
    band_pass = pyaapt.BandpassFilter(speech.fs, params)
    speech.filtered_version(band_pass)
    squared.filtered_version(band_pass)

    frame_size = int(np.fix(params["frame_length"] * speech.fs / 1000))
    frame_jump = int(np.fix(params["frame_space"] * speech.fs / 1000))
    pitch = pyaapt.PitchObj(frame_size, frame_jump, params["fft_length"])
    if not 15 < frame_size < 2048:
        raise ValueError(f"YAAPT frame length {frame_size} samples is outside (15, 2048)")

    _voicing_energy(speech, pitch, params)
    spec_pitch, pitch_std = _spectral_track(squared, pitch, params)
    tracks = [_temporal_track(s, spec_pitch, pitch_std, pitch, params) for s in (speech, squared)]
    (pitch1, merit1), (pitch2, merit2) = (_pad_frames(t, len(spec_pitch)) for t in tracks)
    ref_pitch, ref_merit = pyaapt.refine(pitch1, merit1, pitch2, merit2, spec_pitch, pitch, params)
    # PitchObj.fix() is a no-op with pYAAPT's class settings (PITCH_HALF = PITCH_DOUBLE = 0).
    return np.asarray(pyaapt.dynamic(ref_pitch, ref_merit, pitch, params), dtype=np.float64)


def _row_batches(function: Callable[[slice], None], rows: int, batch: int) -> None:
    """``function(rows slice)`` over batches of rows, on the chunk workers (numpy's FFT releases the
    GIL and runs on one thread; each row's values do not depend on the batching)."""
    batches = [slice(start, start + batch) for start in range(0, rows, batch)]
    run_chunks(function, batches, torch.device("cpu"), intra_op=False)


def _voicing_energy(speech, pitch, params: dict) -> None:
    """NLFER: low-band spectral energy per frame, normalised; sets the pitch object's voicing."""
    nfft = pitch.nfft
    low_bin = int(np.around(params["f0_min"] * 2 / speech.new_fs * nfft))
    high_bin = int(np.around(params["f0_max"] / speech.new_fs * nfft))
    half = pitch.frame_size // 2
    centres = np.arange(half, speech.size - half, pitch.frame_jump)
    windowed = sliding_window_view(speech.filtered, pitch.frame_size)[:: pitch.frame_jump][: len(centres)]
    windowed = windowed * hann(pitch.frame_size + 2)[1:-1]
    energy = np.empty(len(centres))

    def band_energy(rows: slice) -> None:
        spectra = np.fft.rfft(windowed[rows], nfft)
        energy[rows] = np.abs(spectra[:, low_bin - 1 : high_bin]).sum(axis=1)

    _row_batches(band_energy, len(centres), _FFT_ROWS)
    pitch.set_energy(energy, params["nlfer_thresh1"])
    pitch.set_frames_pos(centres)


def _spectral_track(squared, pitch, params: dict) -> tuple[np.ndarray, float]:
    """Spectral harmonic correlation of the voiced frames → smoothed spectral F0 track, its spread."""
    nfft, jump = pitch.nfft, pitch.frame_jump
    slice_size = 2 * pitch.frame_size
    delta = squared.new_fs / nfft
    window_length = int(np.fix(params["shc_window"] / delta))
    half_window = window_length // 2
    window_length += 1 - window_length % 2
    max_shc = int(np.fix((params["f0_max"] + 2 * params["shc_pwidth"]) / delta))
    min_shc = int(np.ceil(params["f0_min"] / delta))
    rows = max_shc - min_shc + 1
    maxpeaks = params["shc_maxpeaks"]

    cand_pitch = np.zeros((maxpeaks, pitch.nframes))
    cand_merit = np.ones((maxpeaks, pitch.nframes))
    tail = slice_size + (pitch.nframes - 1) * jump - squared.size
    data = np.concatenate([squared.filtered, np.zeros(tail)])
    voiced = np.flatnonzero(pitch.vuv)
    slices = sliding_window_view(data, slice_size)[voiced * jump] * kaiser(slice_size, 0.5)
    slices -= slices.mean(axis=1, keepdims=True)

    # Harmonic h (1-based) reads magnitude[h * min_shc + h * r + c] for SHC row r, window column c;
    # magnitude is the spectrum after half a window of zeros.
    rows_index, window_index = np.arange(rows)[:, None], np.arange(window_length)[None, :]
    harmonic_index = [
        h * (min_shc + rows_index) + window_index for h in range(1, int(params["shc_numharms"]) + 2)
    ]
    # At low sample rates the top harmonic reaches past the spectrum, where pYAAPT's strided view
    # reads unowned memory; zeros stand there instead.
    reach = int(harmonic_index[-1].max()) + 1
    shc = np.zeros((len(voiced), max_shc))

    def harmonic_correlation(rows: slice) -> None:
        spectra = np.abs(np.fft.rfft(slices[rows], nfft))
        magnitude = np.zeros((len(spectra), max(half_window + spectra.shape[1], reach)))
        magnitude[:, half_window : half_window + spectra.shape[1]] = spectra
        product = magnitude[:, harmonic_index[0]]
        for index in harmonic_index[1:]:
            product *= magnitude[:, index]
        shc[rows, min_shc - 1 : max_shc] = product.sum(axis=2)

    _row_batches(harmonic_correlation, len(voiced), _SHC_ROWS)
    cand_pitch[:, voiced], cand_merit[:, voiced] = _shc_peaks(shc, delta, params)
    return _smoothed_spectral_track(cand_pitch, cand_merit, pitch.nframes, params)


def _shc_peaks(shc: np.ndarray, delta: float, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """pYAAPT's ``peaks`` on every row of ``shc`` → pitch, merit ``[shc_maxpeaks, rows]``.

    Rows are scaled to their maximum in the F0 range; a candidate is a local maximum of its
    ``shc_pwidth`` neighbourhood (first wins ties) above ``shc_thresh2`` x the range's mean. One to
    ``maxpeaks - 1`` candidates give them by merit, the slots left repeating the best one; none,
    ``maxpeaks`` or more, a flat row (mean above 1 / ``shc_thresh1``) or a best merit under
    ``shc_thresh1`` x the mean give pitch 0 with merit 1 (pYAAPT's "unvoiced" answer).
    """
    maxpeaks = int(params["shc_maxpeaks"])
    width = int(np.fix(params["shc_pwidth"] / delta))
    width += 1 - width % 2
    center = int(np.ceil(width / 2))
    low = max(1, int(np.fix(params["f0_min"] / delta - center)))
    high = min(int(np.fix(params["f0_max"] / delta + center)), shc.shape[1] - width)

    top = shc[:, low : high + 1].max(axis=1, keepdims=True)
    data = shc / np.where(top > 1e-14, top, 1.0)  # pYAAPT scales only rows above its epsilon
    mean = data[:, low : high + 1].mean(axis=1)

    lags = np.arange(low + center + 1, high - center + 1)
    value = data[:, lags]
    candidate = value > params["shc_thresh2"] * mean[:, None]
    for offset in range(1, center + 1):
        candidate &= (value > data[:, lags - offset]) & (value >= data[:, lags + offset])
    merit = np.where(candidate, value, -np.inf)
    order = np.argsort(-merit, axis=1, kind="stable")[:, :maxpeaks]
    best_merit = np.take_along_axis(merit, order, axis=1)
    best_pitch = lags[order] * delta

    found = candidate.sum(axis=1)
    answered = (
        (mean <= 1 / params["shc_thresh1"])
        & (found > 0)
        & (found < maxpeaks)
        & (best_merit[:, 0] / mean >= params["shc_thresh1"])
    )
    slot = np.where(np.arange(maxpeaks)[None, :] < found[:, None], np.arange(maxpeaks)[None, :], 0)
    pitch = np.where(answered[:, None], np.take_along_axis(best_pitch, slot, axis=1), 0.0)
    merit = np.where(answered[:, None], np.take_along_axis(best_merit, slot, axis=1), 1.0)
    return pitch.T, merit.T


def _smoothed_spectral_track(
    cand_pitch: np.ndarray, cand_merit: np.ndarray, nframes: int, params: dict
) -> tuple[np.ndarray, float]:
    """The spectral candidates → one track: best path over voiced frames, interpolated, smoothed."""
    import amfm_decompy.pYAAPT as pyaapt

    spec_pitch = cand_pitch[0]  # a view: the writes below reach cand_pitch[0] as in pYAAPT
    voiced = cand_pitch[0] > 0
    voiced_pitch, voiced_merit = cand_pitch[:, voiced], cand_merit[:, voiced]
    count = voiced_pitch.shape[1]
    mean_f0, spread = np.mean(voiced_pitch[0]), np.std(voiced_pitch[0])
    kernel = max(1, params["median_value"] - 2)

    # The candidate nearest 0.8 x the mean (weighted by merit) is replaced by its median-smoothed track.
    nearest = (np.abs(voiced_pitch - 0.8 * mean_f0) * (3 - voiced_merit)).argmin(0)
    columns = np.arange(count)
    smoothed_nearest = medfilt(voiced_pitch[nearest, columns], kernel)
    voiced_pitch[nearest, columns] = smoothed_nearest

    if count > 2:
        weight = params["dp5_k1"] * spread / mean_f0
        track = medfilt(pyaapt.dynamic5(voiced_pitch, voiced_merit, weight, params["f0_min"]), kernel)
    elif count > 0:
        track = np.full(count, 150.0)
    else:
        track = np.array([150.0])
        cand_pitch[0, 0] = 0
    track_mean = np.mean(track)
    track_std = np.maximum(np.std(track), track_mean * params["spec_pitch_min_std"])
    spec_pitch[cand_pitch[0] > 0] = track
    for end in (0, -1):
        if spec_pitch[end] < track_mean / 2:
            spec_pitch[end] = track_mean
    known = np.nonzero(spec_pitch)[0]
    spec_pitch = PchipInterpolator(known, spec_pitch[known])(range(nframes))
    spec_pitch = lfilter(np.ones(3) / 3, 1.0, spec_pitch)
    spec_pitch[0], spec_pitch[1] = spec_pitch[2], spec_pitch[3]
    return spec_pitch, track_std


def _mean_removed_frames(filtered: np.ndarray, count: int, length: int, jump: int) -> np.ndarray:
    """Frames as pYAAPT's cross-correlation sees them: each removes its mean in place from a shared
    buffer, so a frame starts from samples its overlapping predecessors already shifted."""
    buffer = np.array(filtered, dtype=np.float64)
    frames = np.empty((count, length))
    for frame in range(count):
        segment = buffer[frame * jump : frame * jump + length]
        segment -= np.mean(segment)
        frames[frame] = segment
    return frames


def _temporal_track(
    signal, spec_pitch: np.ndarray, pitch_std: float, pitch, params: dict
) -> tuple[np.ndarray, np.ndarray]:
    """NCCF pitch candidates and merits ``[maxcands, frames]`` near the spectral track."""
    length = int(params["tda_frame_length"] * signal.fs / 1000)
    jump = pitch.frame_jump
    count = min(int((len(signal.data) - (length - jump)) / jump), len(spec_pitch))
    spec_pitch = spec_pitch[:count]
    fs = signal.new_fs
    half_width = int(np.fix(params["nccf_pwidth"] / 2.0))
    lowest = np.maximum(spec_pitch - 2.0 * pitch_std, params["f0_min"])
    highest = np.minimum(spec_pitch + 2.0 * pitch_std, params["f0_max"])
    lag_min = np.fix(fs / highest).astype(np.int64) - half_width
    lag_max = np.fix(fs / lowest).astype(np.int64) + half_width
    if np.any(lag_max >= length):
        raise ValueError("the YAAPT time-domain frame is shorter than its longest lag")

    frames = _mean_removed_frames(signal.filtered, count, length, jump)
    phi = _nccf(frames, lag_min, lag_max)
    time_pitch, time_merit = _nccf_candidates(phi, lag_min, lag_max, fs, params)

    distance = np.abs(time_pitch - spec_pitch)
    freq_thresh = 5.0 * pitch_std
    match = (1 - distance / freq_thresh) * (distance < freq_thresh)
    return time_pitch, (1 + params["merit_boost"]) * time_merit * match


def _nccf(frames: np.ndarray, lag_min: np.ndarray, lag_max: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation ``[frames, length]``: for lag τ in a frame's [lag_min, lag_max),
    <x[:n], x[τ:τ+n]> / sqrt(|x[:n]|² |x[τ:τ+n]|²) with n = length - lag_max; 0 at other lags.

    Bit for bit pYAAPT's values: its dot product of a strided lag matrix is numpy copying that
    matrix and calling BLAS gemv, which is what runs here per frame (gemv's sums depend on the
    matrix shape, so frames cannot share one call); the window energies are the same pairwise sums
    over the same rows, taken from one array of squares.
    """
    count, length = frames.shape
    phi = np.zeros((count, length))
    # lag_view(a)[k, τ, j] = a[k, τ + j]: each frame's lag matrix as a slice (sliding_window_view
    # per frame costs more than the arithmetic). Rows run past a frame's end into the next one, or
    # the padding row, only beyond n, where nothing is read.
    values = np.zeros((count + 1, length))
    values[:count] = frames
    squares = values * values
    shape, step = (count, length, length), values.itemsize
    lagged_rows, squared_rows = (as_strided(a, shape, (a.strides[0], step, step)) for a in (values, squares))
    spans = length - lag_max
    for frame, (low, high, span) in enumerate(zip(lag_min.tolist(), lag_max.tolist(), spans.tolist())):
        head = values[frame, :span]
        lagged = np.ascontiguousarray(lagged_rows[frame, low:high, :span])
        window_energy = squared_rows[frame, low:high, :span].sum(axis=1)
        phi[frame, low:high] = (lagged @ head) / np.sqrt(window_energy * np.dot(head, head))
    return phi


def _nccf_candidates(
    phi: np.ndarray, lag_min: np.ndarray, lag_max: np.ndarray, fs: float, params: dict
) -> tuple[np.ndarray, np.ndarray]:
    """pYAAPT's NCCF peak picking on every frame → pitch and merit ``[maxcands, frames]``.

    A peak is a lag whose NCCF beats both neighbours and ``nccf_thresh1``, at least the half width
    inside the frame's lag range. Where the frame's NCCF maximum passes ``nccf_thresh2``, the single
    best peak is the candidate; otherwise every peak that is the maximum of its ``nccf_pwidth``
    neighbourhood (first wins ties), best ``nccf_maxcands`` by merit, earlier lag on ties.
    """
    length = phi.shape[1]
    maxcands = int(params["nccf_maxcands"])
    center = int(np.fix(params["nccf_pwidth"] / 2.0))
    padded = np.pad(phi, ((0, 0), (center, center)))
    shifted = {d: padded[:, center + d : center + d + length] for d in range(-center, center + 1)}
    columns = np.arange(length)[None, :]
    searchable = (columns >= (lag_min + center)[:, None]) & (columns <= (lag_max - center)[:, None])
    with np.errstate(invalid="ignore"):
        peaks = searchable & (phi > shifted[-1]) & (phi > shifted[1]) & (phi > params["nccf_thresh1"])
        local_max = peaks.copy()
        for d in range(1, center + 1):
            local_max &= (phi > shifted[-d]) & (phi >= shifted[d])
        decisive = (np.max(phi, axis=1) > params["nccf_thresh2"]) & peaks.any(axis=1)

    candidate_merit = np.where(local_max, phi, -np.inf)
    order = np.argsort(-candidate_merit, axis=1, kind="stable")[:, :maxcands]
    merit = np.take_along_axis(candidate_merit, order, axis=1)
    lags = order.astype(np.float64)

    best_peak = np.argmax(np.where(peaks, phi, -np.inf), axis=1)
    merit[decisive] = -np.inf
    merit[decisive, 0] = phi[decisive, best_peak[decisive]]
    lags[decisive, 0] = best_peak[decisive]

    found = np.isfinite(merit)
    pitch = np.where(found, fs / (lags + 1), 0.0)
    merit = np.where(found, merit, 0.0)
    top = merit.max(axis=1, keepdims=True)
    merit = merit / np.where(top > 1.0, top, 1.0)
    return pitch.T, merit.T


def _pad_frames(track: tuple[np.ndarray, np.ndarray], frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad temporal candidates to the spectral track's frame count (as YAAPT 4.0 does)."""
    pitch, merit = track
    missing = frames - pitch.shape[1]
    if missing <= 0:
        return pitch, merit
    return tuple(np.pad(values, ((0, 0), (0, missing))) for values in (pitch, merit))
