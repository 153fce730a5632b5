"""Dynamic int8 layers: error against float32, which layers are swapped, and what is refused."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from hierspeech2.errors import CheckpointError, SettingError
from hierspeech2.models import SpeechSR
from hierspeech2.nn.inference import fuse_weight_norm
from hierspeech2.nn.quantization import (
    ACTIVATION_LEVELS,
    Int8Conv1d,
    Int8Linear,
    cpu_has_vnni,
    int8_inference,
    int8_supported,
    is_int8,
    quantize_activations,
    quantize_int8,
    quantize_weight,
)
from hierspeech2.nn.resblocks import conv1d_time_major

pytestmark = pytest.mark.skipif(not int8_supported(), reason="this PyTorch build lacks oneDNN int8 kernels")

# 7-bit activations and 8-bit per-channel weights: about 2 % relative error per layer on
# Gaussian inputs (measured 2.1-2.3 %); 8-bit activations (VNNI CPUs) about 1.1 %; float32 itself
# is at 1e-7.
LAYER_RELATIVE_ERROR = 0.04 if ACTIVATION_LEVELS == 127 else 0.02


def _relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return ((out - reference).norm() / reference.norm()).item()


def test_activation_codes_take_eight_bits_only_with_vnni() -> None:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    if flags:
        assert cpu_has_vnni() == ("avx512_vnni" in flags or "avx_vnni" in flags)
    assert ACTIVATION_LEVELS == (255 if cpu_has_vnni() else 127)


def test_activation_codes_cover_their_range_and_reconstruct() -> None:
    x = torch.linspace(-3.0, 5.0, 1001)
    codes, scale, zero_point = quantize_activations(x)
    assert codes.dtype == torch.uint8
    assert int(codes.min()) == 0 and int(codes.max()) == ACTIVATION_LEVELS
    assert (scale * (codes.float() - zero_point) - x).abs().max() <= scale / 2 + 1e-6


def test_activation_range_always_contains_zero() -> None:
    codes, scale, zero_point = quantize_activations(torch.full((10,), 2.0))
    assert zero_point == 0
    assert torch.allclose(scale * (codes.float() - zero_point), torch.full((10,), 2.0), atol=scale)


def test_non_finite_activations_are_refused() -> None:
    with pytest.raises(SettingError, match="non-finite"):
        quantize_activations(torch.tensor([0.0, float("nan")]))


def test_weight_codes_are_symmetric_per_output_channel() -> None:
    weight = torch.randn(4, 3, 5) * torch.tensor([1.0, 10.0, 0.1, 0.0]).view(4, 1, 1)
    codes, scale = quantize_weight(weight)
    assert codes.dtype == torch.int8 and scale.shape == (4,)
    assert codes[:3].abs().amax(dim=(1, 2)).tolist() == [127, 127, 127]
    assert codes[3].abs().max() == 0  # an all-zero channel stays zero, no division by zero
    assert torch.allclose(codes.float() * scale.view(-1, 1, 1), weight, atol=float(scale.max()) / 2 + 1e-7)


@pytest.mark.parametrize("shape", [(37, 64), (2, 19, 64)])
def test_int8_linear_is_close_to_float(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(*shape)
    out = Int8Linear(linear)(x)
    reference = linear(x)
    assert out.shape == reference.shape and out.dtype == torch.float32
    error = _relative_error(out, reference)
    assert 1e-4 < error < LAYER_RELATIVE_ERROR  # really quantised, and close


@pytest.mark.parametrize(
    "options",
    [
        {"kernel_size": 3, "padding": 1},
        {"kernel_size": 11, "padding": 25, "dilation": 5},
        {"kernel_size": 10, "stride": 5, "bias": False},
        {"kernel_size": 1},
    ],
)
def test_int8_conv1d_is_close_to_float(options: dict) -> None:
    torch.manual_seed(0)
    conv = nn.Conv1d(24, 40, **options)
    x = torch.randn(2, 24, 300)
    int8 = Int8Conv1d(conv)
    reference = conv(x)
    out = int8(x)
    assert out.shape == reference.shape
    assert 1e-4 < _relative_error(out, reference) < LAYER_RELATIVE_ERROR
    assert torch.equal(int8(x[0]), int8(x[:1])[0])  # unbatched input


def test_time_major_convolution_takes_the_int8_layer() -> None:
    torch.manual_seed(0)
    int8 = Int8Conv1d(nn.Conv1d(16, 16, 7, padding=3))
    x = torch.randn(1, 200, 16)  # [B, T, C]
    out = conv1d_time_major(int8, x)
    assert out.shape == (1, 200, 16)
    assert torch.equal(out, int8(x.transpose(1, 2)).transpose(1, 2))


class _Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Conv1d(8, 16, 5, padding=2)
        self.depthwise = nn.Conv1d(16, 16, 3, padding=1, groups=16)
        self.to_one = nn.Conv1d(16, 1, 3, padding=1)
        self.normalised = weight_norm(nn.Conv1d(16, 16, 3, padding=1))
        self.reflect = nn.Conv1d(16, 16, 3, padding=1, padding_mode="reflect")
        self.head = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.reflect(self.normalised(self.depthwise(self.dense(x))))
        return self.head(hidden.transpose(1, 2)) + self.to_one(hidden).transpose(1, 2)


def test_only_dense_unparametrized_layers_are_swapped() -> None:
    model = quantize_int8(_Mixed().eval(), min_work=0)
    assert isinstance(model.dense, Int8Conv1d)
    assert isinstance(model.head[0], Int8Linear) and isinstance(model.head[2], Int8Linear)
    assert type(model.depthwise) is nn.Conv1d  # grouped
    assert type(model.to_one) is nn.Conv1d  # a single output channel
    assert type(model.reflect) is nn.Conv1d  # not zero padding
    assert not isinstance(model.normalised, Int8Conv1d)  # weight norm not folded
    assert is_int8(model)


def test_min_work_keeps_small_convolutions_in_float() -> None:
    model = quantize_int8(_Mixed().eval(), min_work=16 * 5 + 1)
    assert type(model.dense) is nn.Conv1d  # 16 outputs × 5 taps = 80 < 81
    assert isinstance(model.head[0], Int8Linear)  # Linear layers are always swapped


def test_parts_a_module_names_in_int8_float_parts_stay_float() -> None:
    class KeepsHead(_Mixed):
        int8_float_parts = ("head",)

    outer = nn.Sequential(KeepsHead(), nn.Linear(4, 4))  # the owner may sit anywhere below the model
    quantize_int8(outer.eval(), min_work=0)
    kept = outer[0]
    assert isinstance(kept.dense, Int8Conv1d)  # the owner's other layers are swapped
    assert type(kept.head[0]) is nn.Linear and type(kept.head[2]) is nn.Linear
    assert isinstance(outer[1], Int8Linear)


def test_semantic_encoder_keeps_its_front_end_in_float_and_quantises_its_transformer() -> None:
    from hierspeech2.ssl import RandomSemanticEncoder

    encoder = quantize_int8(RandomSemanticEncoder(hidden_size=32, conv_channels=256).eval())
    front_end = encoder.model.feature_extractor.conv_layers
    assert all(type(layer.conv) is nn.Conv1d for layer in front_end)  # 256 × 3 taps would qualify
    assert isinstance(encoder.model.encoder.layers[0].feed_forward.intermediate_dense, Int8Linear)


def test_quantised_model_refuses_export_and_copies_keep_working() -> None:
    torch.manual_seed(0)
    model = _Mixed().eval()
    x = torch.randn(1, 8, 50)
    quantised = quantize_int8(copy.deepcopy(model), min_work=0)
    with torch.inference_mode():
        out = quantised(x)
        again = copy.deepcopy(quantised)(x)  # after the weights were packed
    assert torch.equal(out, again)
    with pytest.raises(CheckpointError, match="int8"):
        quantised.state_dict()
    model.state_dict()  # the original is untouched


def test_int8_speechsr_stays_close_to_float32() -> None:
    """The released SpeechSR-48k, every dense conv in int8: the waveform stays within a few percent."""
    torch.manual_seed(0)
    reference_model = fuse_weight_norm(SpeechSR.from_packaged(48000).eval())
    quantised = quantize_int8(copy.deepcopy(reference_model), min_work=0)
    assert sum(isinstance(m, Int8Conv1d) for m in quantised.modules()) == 18  # 3 AMP blocks × 6 convolutions
    t = torch.arange(8000) / 16000
    wav = (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(8000)).view(1, 1, -1)
    with torch.inference_mode():
        reference = reference_model(wav)
        out = quantised(wav)
    assert out.shape == reference.shape
    assert 1e-4 < _relative_error(out, reference) < 0.15


def test_int8_inference_on_copies_leaves_the_originals_exportable() -> None:
    model = _Mixed().eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    (quantised,) = int8_inference(model, copy=True, min_work=0)
    assert isinstance(quantised.normalised, Int8Conv1d)  # weight norm folded first, then quantised
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_int8_layers_refuse_inputs_off_the_cpu() -> None:
    layer = Int8Linear(nn.Linear(4, 4))
    with pytest.raises(SettingError, match="CPU only"):
        layer(torch.zeros(2, 4, device="meta"))
