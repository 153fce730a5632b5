"""One run that says how hierspeech2 does on an accelerator: parity, low precision, speed, training.

Usage::

    python benchmarks/device_check.py                 # on cuda: everything (at most ~8 minutes)
    python benchmarks/device_check.py --quick --device cpu   # seconds-scale CPU run (CI keeps it alive)

Sections, each printed as it finishes (a failing section prints its error and the run goes on):

1. ``parity``: every model in float32 on the device against the shared fixtures (the official
   outputs): SpeechSR-24k/48k with the released weights, backbone voice conversion and TTV
   inference with the filled weights, the whole TTS chain; max |diff| next to the CPU bound.
2. ``precision``: the backbone's conversion and SpeechSR under bf16 and fp16 autocast: max |diff|
   and log-mel L1 against float32.
3. ``speed``: real-time factor of SpeechSR-48k, backbone conversion and TTS (12 s; ``--quick``: 2 s),
   eager and with ``torch.compile`` (``--quick`` skips compiling).
4. ``training``: one optimisation step of each task (backbone, TTV, SpeechSR) at full size in
   ``bf16-mixed`` (``--quick``: tiny models, 32-bit) with the peak device memory.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PARITY = SHARED / "parity"


def section(name: str, body: Callable[[], None]) -> bool:
    print(f"\n== {name}", flush=True)
    began = time.perf_counter()
    try:
        body()
    except Exception:  # noqa: BLE001  (report and go on: one broken section must not hide the others)
        traceback.print_exc(limit=4)
        print(f"== {name}: FAILED after {time.perf_counter() - began:.1f} s", flush=True)
        return False
    print(f"== {name}: done in {time.perf_counter() - began:.1f} s", flush=True)
    return True


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def filled(model: str) -> dict:
    spec = importlib.util.spec_from_file_location("parity_fill", PARITY / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.official_state_dict(model, str(PARITY))


class Check:
    def __init__(self, args: argparse.Namespace) -> None:
        from safetensors.torch import load_file

        self.args = args
        self.device = torch.device(args.device)
        self.cases = load_file(str(PARITY / "cases.safetensors"))
        self.settings = json.loads((PARITY / "cases.json").read_text())["cases"]
        self._models: dict[str, torch.nn.Module] = {}

    def model(self, name: str) -> torch.nn.Module:
        from hierspeech2.models import HierSpeech2, SpeechSR, TextToVec

        if name not in self._models:
            official = SHARED / "checkpoints" / "official"
            build = {
                "speechsr24k": lambda: SpeechSR.from_official(official / "speechsr24k_G_340000.pth"),
                "speechsr48k": lambda: SpeechSR.from_official(official / "speechsr48k_G_100000.pth"),
                "backbone": lambda: HierSpeech2.from_official(filled("backbone")),
                "ttv": lambda: TextToVec.from_official(filled("ttv")),
            }[name]
            self._models[name] = build().to(self.device).eval()
        return self._models[name]

    def vc(self, case: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        semantic = self.cases[f"{case}.vc.w2v"].to(self.device)
        mel = self.cases[f"{case}.vc.trg_mel"].to(self.device)
        autocast = (
            torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            return (
                self.model("backbone")
                .voice_conversion(
                    semantic,
                    torch.tensor([semantic.shape[-1]], device=self.device),
                    mel,
                    torch.full((mel.shape[0],), mel.shape[-1], device=self.device),
                    self.cases[f"{case}.vc.f0"].to(self.device),
                    noise_scale=0.0,
                )
                .float()
                .cpu()
            )

    def parity(self) -> None:
        from hierspeech2.pipelines import TextToSpeech

        cases = ("a",) if self.args.quick else ("a", "b")
        for case in cases:
            for rate in ("24k", "48k"):
                wav = self.cases[f"{case}.speechsr.audio"][..., :8000].to(self.device)
                with torch.inference_mode():
                    out = self.model(f"speechsr{rate}")(wav).float().cpu()
                expected = self.cases[f"{case}.speechsr{rate}.out"]
                kept = out.shape[-1] - 2_000
                self.report(
                    f"speechsr{rate} {case}", (out[..., :kept] - expected[..., :kept]).abs().max(), 1e-4
                )
            expected = self.cases[f"{case}.vc.out"]
            self.report(f"backbone vc {case}", (self.vc(case) - expected).abs().max(), 1e-4)
            tokens, mel = self.cases[f"{case}.ttv.tokens"], self.cases[f"{case}.ttv.prompt_mel"]
            with torch.inference_mode():
                semantic, log_f0 = self.model("ttv").infer(
                    tokens.to(self.device),
                    torch.tensor([tokens.shape[1]], device=self.device),
                    mel.to(self.device),
                    torch.full((mel.shape[0],), mel.shape[-1], device=self.device),
                    noise_scale=0.0,
                    noise_scale_w=0.0,
                )
            expected_frames = self.cases[f"{case}.ttv.w2v"].shape[-1]
            if semantic.shape != self.cases[f"{case}.ttv.w2v"].shape:
                print(f"  ttv {case}: length {semantic.shape[-1]} ≠ {expected_frames} (FAIL)")
            else:
                self.report(
                    f"ttv semantic {case}", (semantic.cpu() - self.cases[f"{case}.ttv.w2v"]).abs().max(), 1e-3
                )
                self.report(
                    f"ttv log F0 {case}", (log_f0.cpu() - self.cases[f"{case}.ttv.pitch"]).abs().max(), 1e-4
                )
            if not self.args.quick:
                tts = TextToSpeech(
                    self.model("ttv"), self.model("backbone"), self.model("speechsr48k"), output_rate=48_000
                )
                with torch.inference_mode():
                    audio = tts.synthesize_from_tokens(
                        tokens, mel, noise_scale_ttv=0.0, noise_scale_vc=0.0, noise_scale_w=0.0
                    )
                expected = self.cases[f"{case}.tts.audio48k"]
                if audio.shape == expected.shape:
                    self.report(f"tts chain {case}", (audio.cpu() - expected).abs().max(), 1e-3)
                else:
                    print(f"  tts chain {case}: length {audio.shape} ≠ {expected.shape} (FAIL)")

    @staticmethod
    def report(name: str, difference: torch.Tensor, bound: float) -> None:
        value = float(difference)
        verdict = "ok" if value <= bound else "ABOVE the CPU bound"
        print(f"  {name:<22} max |diff| {value:.2e}  (CPU bound {bound:.0e}: {verdict})", flush=True)

    def precision(self) -> None:
        from hierspeech2.audio import LogMelSpectrogram

        mel = LogMelSpectrogram()
        reference = self.vc("a")
        dtypes = [torch.bfloat16] if self.args.quick else [torch.bfloat16, torch.float16]
        native_bf16 = self.device.type != "cpu" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        for dtype in dtypes:
            if self.device.type == "cpu" and (dtype == torch.float16 or not native_bf16):
                print(f"  {dtype}: skipped on this CPU (emulated: minutes, and not what a GPU computes)")
                continue
            out = self.vc("a", dtype)
            l1 = (mel(out.reshape(-1)) - mel(reference.reshape(-1))).abs().mean().item()
            name = str(dtype).split(".")[-1]
            print(f"  backbone vc {name:<9} max |diff| {(out - reference).abs().max():.2e}, "
                  f"log-mel L1 {l1:.4f}", flush=True)  # fmt: skip

    def timed(self, function: Callable[[], object], reps: int) -> float:
        function()
        sync(self.device)
        times = []
        for _ in range(reps):
            began = time.perf_counter()
            function()
            sync(self.device)
            times.append(time.perf_counter() - began)
        return sorted(times)[len(times) // 2]

    def speed(self) -> None:
        seconds = 1.0 if self.args.quick else 12.0
        reps = 1 if self.args.quick else 3
        frames = int(seconds * 50)
        generator = torch.Generator().manual_seed(0)
        semantic = torch.randn(1, 1024, frames, generator=generator).to(self.device)
        log_f0 = torch.log1p(120 + 30 * torch.rand(1, 1, 4 * frames, generator=generator)).to(self.device)
        prompt = self.cases["a.vc.trg_mel"].to(self.device)
        wav = torch.randn(1, 1, frames * 320, generator=generator).mul(0.1).to(self.device)
        backbone, sr = self.model("backbone"), self.model("speechsr48k")

        def convert(model=backbone) -> object:
            with torch.inference_mode():
                return model.voice_conversion(
                    semantic, torch.tensor([frames], device=self.device), prompt,
                    torch.full((prompt.shape[0],), prompt.shape[-1], device=self.device), log_f0,
                )  # fmt: skip

        def upsample(model=sr) -> object:
            with torch.inference_mode():
                return model(wav)

        stages = {"speechsr48k": upsample, "backbone vc": convert}
        for name, function in stages.items():
            print(f"  {name:<14} eager RTF {self.timed(function, reps) / seconds:.4f}", flush=True)
        if self.args.quick:
            print("  torch.compile: skipped (--quick)")
            return
        compiled_sr = torch.compile(sr, dynamic=False)
        backbone.voice_conversion = torch.compile(backbone.voice_conversion, dynamic=False)
        try:
            compiled = self.timed(lambda: upsample(compiled_sr), reps)
            print(f"  speechsr48k    compiled RTF {compiled / seconds:.4f}")
            print(f"  backbone vc    compiled RTF {self.timed(convert, reps) / seconds:.4f}", flush=True)
        finally:
            del backbone.voice_conversion

    def training(self) -> None:
        import lightning.pytorch as pl

        from hierspeech2.audio import LogMelSpectrogram
        from hierspeech2.models import HierSpeech2, SpeechSR, TextToVec
        from hierspeech2.nn.discriminators import MultiDiscriminator
        from hierspeech2.tasks import HierSpeech2Task, SpeechSRTask, TTVTask
        from hierspeech2.tasks.synthetic import SyntheticSpeechSRDataModule, SyntheticTTVDataModule

        quick = self.args.quick
        if quick:  # the tiny models of the test suite
            sys.path.insert(0, str(ROOT / "tests"))
            sys.path.insert(0, str(ROOT / "tests" / "tasks"))
            import tiny_models
            from tiny_training import TINY_DISCRIMINATOR, TINY_MEL_48K, TINY_SR

            backbone = HierSpeech2(
                **{**tiny_models.TINY_BACKBONE, "semantic_channels": 1024, "spec_channels": 641}
            )
            tasks = {
                "backbone": (HierSpeech2Task(backbone, MultiDiscriminator(**TINY_DISCRIMINATOR),
                                             semantic_encoder=None, uncond_probability=0.0, window_frames=16),
                             backbone_data(2, 32)),
                "ttv": (TTVTask(TextToVec(**tiny_models.TTV_UNIT), pitch_window=8),
                        SyntheticTTVDataModule(batch_size=2, train_size=2, val_size=0, n_vocab=20,
                                               semantic_channels=24, mel_channels=12)),
                "speechsr": (SpeechSRTask(SpeechSR(**TINY_SR), MultiDiscriminator(**TINY_DISCRIMINATOR),
                                          LogMelSpectrogram(**TINY_MEL_48K)),
                             SyntheticSpeechSRDataModule(batch_size=2, train_size=2, val_size=0,
                                                         segment=4800)),
            }  # fmt: skip
        else:  # the released configurations, official batch shapes
            tasks = {
                "backbone": (HierSpeech2Task(HierSpeech2(), semantic_encoder=None), backbone_data(8, 192)),
                "ttv": (TTVTask(TextToVec()), SyntheticTTVDataModule(batch_size=8, train_size=8, val_size=0)),
                "speechsr": (SpeechSRTask(SpeechSR.from_packaged(48_000)),
                             SyntheticSpeechSRDataModule(batch_size=16, train_size=16, val_size=0)),
            }  # fmt: skip
        for name, (task, data) in tasks.items():
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            trainer = pl.Trainer(
                accelerator=self.device.type, devices=1, precision="32-true" if quick else "bf16-mixed",
                max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
            )  # fmt: skip
            began = time.perf_counter()
            trainer.fit(task, data)
            peak = (
                torch.cuda.max_memory_allocated(self.device) / 2**30
                if self.device.type == "cuda"
                else float("nan")
            )
            losses = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
            finite = all(math.isfinite(value) for value in losses.values())
            shown = ", ".join(f"{k} {v:.3g}" for k, v in list(losses.items())[:3])
            print(f"  {name:<9} one step {time.perf_counter() - began:.1f} s, peak memory {peak:.2f} GiB, "
                  f"losses {'finite' if finite else 'NOT FINITE'} ({shown})", flush=True)  # fmt: skip


def backbone_data(batch_size: int, frames: int) -> object:
    """A datamodule of ``batch_size`` random backbone segments of ``frames`` frames (1024 MMS channels)."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from hierspeech2.audio import LinearSpectrogram, LogMelSpectrogram
    from hierspeech2.data.datasets import collate_backbone

    generator = torch.Generator().manual_seed(0)
    linear, mel = LinearSpectrogram(), LogMelSpectrogram()
    items = []
    for _ in range(batch_size):
        audio = 0.1 * torch.randn(frames * 320, generator=generator)
        f0 = 100 + 50 * torch.rand(frames * 4, generator=generator)
        semantic = torch.randn(1024, frames, generator=generator)
        items.append(
            {"audio": audio, "linear": linear(audio), "mel": mel(audio), "semantic": semantic, "f0": f0}
        )

    class Data(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return DataLoader(items, batch_size, collate_fn=collate_backbone)

    return Data()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="seconds-scale run (CPU in CI)")
    parser.add_argument("--sections", nargs="+", default=["parity", "precision", "speed", "training"])
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # parity is judged in true float32
        torch.backends.cudnn.allow_tf32 = False
        print(
            f"device {torch.cuda.get_device_name(args.device)}, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}"
        )
    else:
        print(f"device cpu ({torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")  # fmt: skip
    check = Check(args)
    results = [section(name, getattr(check, name)) for name in args.sections]
    print(f"\n{sum(results)} of {len(results)} sections done")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
