"""``hierspeech2 preprocess``: corpus → feature cache, resumable, parallel, with a skip report.

Decoding, resampling, F0 and phonemes run in ``num_workers`` processes; the semantic encoder runs
once, in this process, on ``device``. Each finished utterance is renamed into place atomically, so
a run that is killed resumes without redoing or corrupting anything, and a finished cache is a
no-op. ``--format litdata`` writes a chunked streaming dataset instead (several nodes, object
storage): see :mod:`hierspeech2.data.streaming`.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import logging
import multiprocessing
import os
import shutil
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import torch
from tqdm.auto import tqdm
from typing_extensions import Self

from hierspeech2.constants import HOP_LENGTH, MODEL_SAMPLE_RATE
from hierspeech2.data.cache import TEMP_MARKER, CacheRecord, FeatureCache, tensors_for_item
from hierspeech2.data.corpora import CorpusKind, Utterance, read_corpus, split_long_utterances
from hierspeech2.data.features import (
    MODEL_KINDS,
    ModelKind,
    PreparedUtterance,
    SemanticFeatures,
    UnusableUtterance,
    make_prepare,
)
from hierspeech2.data.symbol_survey import SymbolSurvey, survey_symbols
from hierspeech2.errors import DataNotFoundError, OutputError
from hierspeech2.text.symbols import SYMBOLS
from hierspeech2.text.tables import resolve_symbols, write_symbols

__all__ = ["PreprocessReport", "add_preprocess_parser", "build_cache", "main", "preprocess", "run_preprocess"]

logger = logging.getLogger(__name__)

# Pieces of at most 20 s keep MMS attention affordable and give random segments variety.
DEFAULT_MAX_SECONDS = 20.0
IN_FLIGHT_PER_WORKER = (
    4  # queued utterances per worker: keeps workers busy without holding the corpus in memory
)


@dataclass(frozen=True)
class PreprocessReport:
    """What a run did. ``cached``/``skipped`` count the whole cache, ``processed`` this run only.

    For the text-to-vec model, ``symbols`` is the table the tokens index and ``missing_symbols``
    counts the corpus's phonemes outside the base table (added to ``symbols`` with
    ``extend_symbols``, dropped otherwise).
    """

    total: int
    cached: int
    skipped: int
    processed: int
    skipped_now: int
    seconds: float
    cache_dir: Path
    symbols: tuple[str, ...] | None = None
    missing_symbols: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def utterances_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Skip:
    utterance: Utterance
    reason: str


def _prepare_or_skip(prepare: Callable[[Utterance], PreparedUtterance], utterance: Utterance):
    try:
        return prepare(utterance)
    except UnusableUtterance as error:
        return _Skip(utterance, str(error))
    except Exception as error:  # noqa: BLE001 - one odd file must not stop a multi-day run; it is reported
        logger.debug("unexpected error on %s\n%s", utterance.path, traceback.format_exc())
        return _Skip(utterance, f"unexpected {type(error).__name__}: {error}")


def _init_worker() -> None:
    # One intra-op thread per worker: the parallelism is across processes.
    torch.set_num_threads(1)


def _extractor_name(f0_extractor) -> str:
    if isinstance(f0_extractor, str):
        return f0_extractor
    return f"{f0_extractor.__module__}:{getattr(f0_extractor, '__qualname__', repr(f0_extractor))}"


class _CacheLock:
    """An exclusive lock on the cache folder; the OS releases it when the holder dies."""

    def __init__(self, root: Path) -> None:
        self.path = root / ".lock"

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "w")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            self._handle.close()
            raise RuntimeError(
                f"another preprocess run is writing {self.path.parent}; wait for it or use another --out"
            ) from error
        return self

    def __exit__(self, *exc_info) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


def preprocess(
    utterances: Sequence[Utterance],
    out: str | os.PathLike,
    model: ModelKind,
    *,
    semantic: SemanticFeatures | None = None,
    f0_extractor: str | Callable = "yaapt",
    target_rate: int = 48_000,
    num_workers: int = 0,
    mp_context: str | None = None,
    retry_skipped: bool = False,
    progress: bool = True,
    symbols: Sequence[str] | str | os.PathLike | None = None,
    extend_symbols: bool = False,
) -> PreprocessReport:
    """Write the feature cache of ``utterances`` to ``out`` (resuming what is there) and its manifest.

    ``semantic`` computes the MMS features (default: ``facebook/mms-300m`` layer 7 on CPU); not used
    for ``model="speechsr"``. ``num_workers=0`` runs everything in this process; ``mp_context`` is
    the workers' start method (None: the platform default, as torch's DataLoader).

    ``model="ttv"``: transcripts become ids of ``symbols`` (a table, a ``symbols.json`` path, or
    None for the released table). Phonemes outside it are reported once for the corpus; with
    ``extend_symbols`` the table is extended by them instead. The table used is written to the
    cache as ``symbols.json``: train a model with it (``TextToVec(symbols=...)``).
    """
    if model not in MODEL_KINDS:
        raise ValueError(f"unknown model {model!r}; use one of {MODEL_KINDS}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    cache = FeatureCache(out)
    start = time.perf_counter()
    needs_semantic = model != "speechsr"
    if needs_semantic:
        semantic = semantic if semantic is not None else SemanticFeatures()
        semantic.load()  # before anything is written: a missing download must leave no cache behind

    with _CacheLock(cache.root):
        config: dict = {"model": model, "f0": None, "semantic": None, "hop_length": HOP_LENGTH}
        if needs_semantic:
            config.update(
                sample_rate=MODEL_SAMPLE_RATE, f0=_extractor_name(f0_extractor), semantic=semantic.describe()
            )
        else:
            config.update(sample_rate=target_rate)
        table = None
        if model == "ttv":
            table, survey = _symbol_table(utterances, symbols, extend_symbols, progress)
            if table != SYMBOLS:
                config["symbols"] = list(table)
        cache.check_or_write_config(config)
        if table is not None:
            write_symbols(cache.root, table)
        removed = cache.remove_stale_temporaries()
        if removed:
            logger.info("removed %d temporary files left by an interrupted run", removed)
        todo = _pending(cache, utterances, retry_skipped)

        prepare = make_prepare(model, f0_extractor, target_rate, table)
        processed = skipped_now = 0
        bar = tqdm(
            total=len(utterances),
            initial=len(utterances) - len(todo),
            unit="utt",
            desc=f"preprocess {model}",
            disable=not progress,
            dynamic_ncols=True,
        )
        with bar:
            for result in _results(prepare, todo, num_workers, mp_context):
                if isinstance(result, PreparedUtterance):
                    try:
                        _write(cache, result, semantic if needs_semantic else None)
                        processed += 1
                    except UnusableUtterance as error:
                        result = _Skip(result.utterance, str(error))
                if isinstance(result, _Skip):
                    utterance = result.utterance
                    cache.write_skip(utterance.speaker, utterance.id, utterance.path, result.reason)
                    logger.warning("skipped %s (%s): %s", utterance.id, utterance.path, result.reason)
                    skipped_now += 1
                bar.update(1)
        records, skips = cache.write_manifest()
    report = PreprocessReport(
        total=len(utterances),
        cached=len(records),
        skipped=len(skips),
        processed=processed,
        skipped_now=skipped_now,
        seconds=time.perf_counter() - start,
        cache_dir=cache.root,
        symbols=table,
        missing_symbols=dict(survey.missing) if model == "ttv" else {},
    )
    logger.info(
        "%s: %d utterances cached, %d skipped (see %s); this run: %d new in %.1f s (%.2f utt/s)",
        cache.root,
        report.cached,
        report.skipped,
        cache.report_path,
        processed,
        report.seconds,
        report.utterances_per_second,
    )
    return report


def _symbol_table(
    utterances: Sequence[Utterance],
    symbols: Sequence[str] | str | os.PathLike | None,
    extend: bool,
    progress: bool,
) -> tuple[tuple[str, ...], SymbolSurvey]:
    """The table the cache's tokens index: ``symbols``, extended by the corpus's phonemes if asked."""
    base = resolve_symbols(symbols)
    survey = survey_symbols(utterances, base, progress=progress)
    if not survey.missing:
        return survey.table, survey
    if extend:
        table = survey.extended_table()
        logger.info(
            "%s\nextended the table by these %d symbols: %d symbols in all",
            survey.report(),
            len(table) - len(survey.table),
            len(table),
        )
        return table, survey
    logger.warning(
        "%s\nthey are dropped from the tokens; run again with --extend-symbols (a new cache folder) to "
        "write a table that has them, and train with it",
        survey.report(),
    )
    return survey.table, survey


def build_cache(
    utterances: Sequence[Utterance], out: str | os.PathLike, model: ModelKind, **options
) -> PreprocessReport:
    """:func:`preprocess` (``options`` are its keywords) into a temporary sibling of ``out``, renamed to
    ``out`` once complete: ``out`` is then a finished cache or absent, never half of one.

    A failed or interrupted build removes what it wrote (a killed one leaves its temporary folder,
    which the next build on the same machine removes). A build that caches no utterance at all is
    an error naming the first skip reason. When another process (another node on a shared file
    system) finished ``out`` first, its cache is kept and this one discarded.
    """
    out = Path(out)
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; build_cache only writes a new cache folder")
    created = [folder for folder in (out.parent, *out.parent.parents) if not folder.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(out)
    temp = out.with_name(f".{out.name}{TEMP_MARKER}{socket.gethostname()}-{os.getpid()}")
    finished = False
    try:
        report = preprocess(utterances, temp, model, **options)
        if not report.cached:
            skips = FeatureCache(temp).scan_skips()
            reason = f"; the first: {skips[0]['id']}: {skips[0]['reason']}" if skips else ""
            raise DataNotFoundError(
                f"no utterance of the {report.total} given could be preprocessed for {out}{reason}"
            )
        (temp / ".lock").unlink(missing_ok=True)
        try:
            os.rename(temp, out)  # atomic; replaces an empty folder, refuses a filled one
        except OSError as error:
            if not FeatureCache(out).finished:
                raise OutputError.writing(out, error) from error
            logger.info("%s was finished by another process meanwhile; keeping it", out)
        finished = True
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        if not finished:
            for folder in created:  # innermost first; only the empty ones this build made
                try:
                    folder.rmdir()
                except OSError:
                    break
    logger.info("built the feature cache %s", out)
    return dataclasses.replace(report, cache_dir=out)


def _remove_dead_builds(out: Path) -> None:
    """Delete temporary folders of builds of ``out`` on this machine whose process is gone (killed)."""
    prefix = f".{out.name}{TEMP_MARKER}{socket.gethostname()}-"
    for folder in out.parent.glob(f"{prefix}*"):
        pid = folder.name[len(prefix) :]
        if pid.isdigit() and not _process_alive(int(pid)):
            logger.info("removing %s, left by a killed build", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _pending(cache: FeatureCache, utterances: Sequence[Utterance], retry_skipped: bool) -> list[Utterance]:
    by_file: dict[Path, str] = {}
    todo = []
    for utterance in utterances:
        item = cache.item_path(utterance.speaker, utterance.id)
        if item in by_file:
            raise ValueError(
                f"utterances {by_file[item]!r} and {utterance.id!r} map to the same cache file {item}; "
                "give them distinct ids"
            )
        by_file[item] = utterance.id
        if item.exists():
            continue
        skip = cache.skip_path(utterance.speaker, utterance.id)
        if skip.exists():
            if not retry_skipped:
                continue
            skip.unlink()
        todo.append(utterance)
    return todo


def _results(prepare, todo: Sequence[Utterance], num_workers: int, mp_context: str | None):
    """Prepared utterances (or skips) as they complete."""
    if num_workers == 0:
        for utterance in todo:
            yield _prepare_or_skip(prepare, utterance)
        return
    context = multiprocessing.get_context(mp_context)
    with futures.ProcessPoolExecutor(num_workers, mp_context=context, initializer=_init_worker) as pool:
        queue = iter(todo)
        pending: set[futures.Future] = set()
        while True:
            while len(pending) < IN_FLIGHT_PER_WORKER * num_workers:
                utterance = next(queue, None)
                if utterance is None:
                    break
                pending.add(pool.submit(_prepare_or_skip, prepare, utterance))
            if not pending:
                return
            done, pending = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
            for future in done:
                yield future.result()


def _write(cache: FeatureCache, prepared: PreparedUtterance, semantic: SemanticFeatures | None) -> None:
    utterance = prepared.utterance
    features = semantic(prepared.audio) if semantic is not None else None
    tokens = prepared.tokens
    record = CacheRecord(
        id=utterance.id,
        file=cache.item_path(utterance.speaker, utterance.id).relative_to(cache.root).as_posix(),
        speaker=utterance.speaker,
        language=utterance.language,
        text=utterance.text,
        source=utterance.path,
        sample_rate=prepared.sample_rate,
        num_samples=prepared.num_samples,
        num_frames=prepared.num_frames,
        num_tokens=0 if tokens is None else int(tokens.shape[-1]),
        voiced_frames=0 if prepared.f0 is None else int((prepared.f0 > 0).sum()),
    )
    for message in prepared.warnings:
        logger.warning("%s: %s", utterance.id, message)
    cache.write_item(record, tensors_for_item(prepared.audio, features, prepared.f0, tokens))


# ------------------------------------------------------------------------------------------ CLI


def add_preprocess_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``preprocess`` on an ``argparse`` subparsers object; returns the new parser."""
    parser = subparsers.add_parser(
        "preprocess",
        help="corpus → training feature cache (resumable, parallel)",
        description=(
            "Decode a corpus, resample to 16 kHz, compute MMS features (float16), F0 and phoneme "
            "tokens, and write a feature cache (or a litdata streaming dataset). Re-run the same "
            "command to resume an interrupted run; unusable files are listed in skipped.tsv."
        ),
    )
    parser.add_argument("corpus", help="LibriTTS or Libri-light folder, or a TSV/JSONL manifest")
    parser.add_argument("--out", required=True, help="cache folder (or litdata output dir / s3:// URL)")
    parser.add_argument(
        "--model", required=True, choices=MODEL_KINDS, help="which model the features are for"
    )
    parser.add_argument("--kind", choices=get_args(CorpusKind), help="corpus layout (auto)")
    parser.add_argument("--subsets", help="comma-separated subsets, e.g. train-clean-100,train-clean-360")
    parser.add_argument("--format", default="cache", choices=("cache", "litdata"), help="output format")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="CPU worker processes (litdata: the same number on every node)",
    )
    parser.add_argument("--device", default="cpu", help="device of the semantic encoder (cpu, cuda, cuda:1)")
    parser.add_argument(
        "--semantic-model", default="facebook/mms-300m", help="Hub id or local transformers dir"
    )
    parser.add_argument("--semantic-layer", type=int, default=7, help="hidden state to keep (released: 7)")
    parser.add_argument(
        "--f0",
        default="yaapt",
        help="F0 extractor: yaapt, yaapt-inference, swift, swift-inference, praat, praat-inference "
        "or module:function",
    )
    parser.add_argument("--target-rate", type=int, default=48_000, help="SpeechSR target sample rate")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=DEFAULT_MAX_SECONDS,
        help="cut untranscribed files longer than this into pieces (Libri-light chapters); 0 = never",
    )
    parser.add_argument(
        "--symbols",
        default=None,
        help="--model ttv: symbol table of the model to train or fine-tune (symbols.json, or a folder "
        "holding one; default: the released 178-symbol table)",
    )
    parser.add_argument(
        "--extend-symbols",
        action="store_true",
        help="--model ttv: add the corpus's phonemes missing from the table to it (written to "
        "OUT/symbols.json) instead of dropping them",
    )
    parser.add_argument("--retry-skipped", action="store_true", help="try previously skipped files again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from hierspeech2.cli import add_threads_option  # shared by every command; applied by hierspeech2.cli.main

    add_threads_option(parser)  # this process (MMS); each worker process uses one thread
    streaming = parser.add_argument_group("litdata output (--format litdata)")
    streaming.add_argument("--chunk-bytes", default="64MB", help="size of each chunk file")
    streaming.add_argument(
        "--num-nodes", type=int, help="machines sharing the job (DATA_OPTIMIZER_NUM_NODES)"
    )
    streaming.add_argument("--node-rank", type=int, help="this machine's rank (DATA_OPTIMIZER_NODE_RANK)")
    parser.set_defaults(handler=run_preprocess)
    return parser


def run_preprocess(args: argparse.Namespace) -> int:
    """Run ``hierspeech2 preprocess`` from parsed arguments; returns the exit status."""
    subsets = [name for name in args.subsets.split(",") if name] if args.subsets else None
    utterances = read_corpus(args.corpus, kind=args.kind, subsets=subsets)
    if args.max_seconds and args.model != "ttv":
        utterances = split_long_utterances(utterances, args.max_seconds)
    if not utterances:
        print(f"error: no utterances found in {args.corpus}", file=sys.stderr)
        return 1
    if (args.symbols or args.extend_symbols) and (args.model != "ttv" or args.format == "litdata"):
        print(
            "error: --symbols and --extend-symbols are for --model ttv with --format cache",
            file=sys.stderr,
        )
        return 2
    semantic = SemanticFeatures(
        name_or_path=args.semantic_model, layer=args.semantic_layer, device=args.device
    )
    if args.format == "litdata":
        from hierspeech2.data.streaming import StreamingItemWriter, write_streaming_dataset

        if args.model != "speechsr" and not Path(args.semantic_model).expanduser().is_dir():
            from hierspeech2.ssl import ensure_downloadable

            ensure_downloadable(args.semantic_model)  # fail in seconds, before the workers start

        result = write_streaming_dataset(
            utterances,
            args.out,
            StreamingItemWriter(
                args.model,
                semantic_model=args.semantic_model,
                semantic_layer=args.semantic_layer,
                device=args.device,
                f0_extractor=args.f0,
                target_rate=args.target_rate,
            ),
            num_workers=max(1, args.num_workers),
            chunk_bytes=args.chunk_bytes,
            num_nodes=args.num_nodes,
            node_rank=args.node_rank,
        )
        print(f"{args.out}: {result}", file=sys.stderr)
        return 0
    # preprocess() logs the summary line (once: printing it here too showed it twice)
    preprocess(
        utterances,
        args.out,
        args.model,
        semantic=semantic,
        f0_extractor=args.f0,
        target_rate=args.target_rate,
        num_workers=args.num_workers,
        retry_skipped=args.retry_skipped,
        progress=not args.no_progress,
        symbols=args.symbols,
        extend_symbols=args.extend_symbols,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hierspeech2.data.preprocess CORPUS --out DIR --model ...``."""
    parser = argparse.ArgumentParser(prog="python -m hierspeech2.data.preprocess")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_preprocess_parser(subparsers)
    args = parser.parse_args(["preprocess", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
