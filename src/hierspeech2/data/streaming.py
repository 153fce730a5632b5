"""Chunked streaming datasets with ``litdata``: preprocessing across several machines, training from them.

Writing (``hierspeech2 preprocess ... --format litdata``) wraps ``litdata.optimize``: every node
runs the same command with its rank, litdata gives each node its share of the corpus, its
workers write ``chunk-<rank>-<n>.bin`` files into the one output folder (local, shared file
system, or object storage: ``s3://``, ``gs://``), and the last node writes ``index.json``.
The node count and rank are litdata's ``DATA_OPTIMIZER_NUM_NODES`` / ``DATA_OPTIMIZER_NODE_RANK``
(``--num-nodes`` / ``--node-rank`` set them).

Reading: :func:`open_streaming_dataset` returns a ``litdata.StreamingDataset`` that splits the
chunks over DDP ranks and dataloader workers itself and resumes mid-epoch through
``StreamingDataLoader.state_dict()``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hierspeech2.constants import SEMANTIC_LAYER
from hierspeech2.data.corpora import Utterance
from hierspeech2.data.datasets import BACKBONE_FILTER, SPEECHSR_FILTER, TTV_FILTER, UtteranceFilter
from hierspeech2.data.features import ModelKind, SemanticFeatures, UnusableUtterance, prepare_utterance

__all__ = ["StreamingItemWriter", "open_streaming_dataset", "write_streaming_dataset"]

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
DEFAULT_FILTERS = {"ttv": TTV_FILTER, "backbone": BACKBONE_FILTER, "speechsr": SPEECHSR_FILTER}
NODE_INDEX_WAIT_S = 24 * 3600.0  # how long the last node waits for the others on a shared file system


class StreamingItemWriter:
    """The ``fn`` given to ``litdata.optimize``: an utterance → a dict of arrays, or None to skip it.

    A streamed dataset cannot drop items at read time without putting DDP ranks out of step, so
    ``keep`` (default: the model's official rules, see :mod:`hierspeech2.data.datasets`) is
    applied here, before the MMS encoder runs. Picklable (litdata ships it to its worker
    processes); the semantic encoder is loaded lazily, once per worker.
    """

    def __init__(
        self,
        model: ModelKind,
        semantic_model: str = "facebook/mms-300m",
        semantic_layer: int = SEMANTIC_LAYER,
        device: str = "cpu",
        f0_extractor: str | Callable = "yaapt",
        target_rate: int = 48_000,
        keep: UtteranceFilter | None = None,
    ) -> None:
        self.model = model
        self.keep = keep if keep is not None else DEFAULT_FILTERS[model]
        self.semantic_model = semantic_model
        self.semantic_layer = semantic_layer
        self.device = device
        self.f0_extractor = f0_extractor
        self.target_rate = target_rate
        self._semantic: SemanticFeatures | None = None
        self._worker_pid: int | None = None
        self._owner_pid = os.getpid()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_semantic": None, "_worker_pid": None}

    def __call__(self, utterance: Utterance | dict) -> dict[str, Any] | None:
        if self._worker_pid != os.getpid():
            # litdata's workers may be forked from a process whose torch thread pool is running;
            # a single intra-op thread per worker keeps the child from deadlocking on it. The
            # process that built this object keeps its own setting (it may be a user's session).
            if os.getpid() != self._owner_pid:
                torch.set_num_threads(1)
            self._worker_pid = os.getpid()
        if isinstance(utterance, dict):
            utterance = Utterance(**utterance)
        try:
            prepared = prepare_utterance(utterance, self.model, self.f0_extractor, self.target_rate)
            tokens = 0 if prepared.tokens is None else prepared.tokens.shape[-1]
            voiced = 1 if prepared.f0 is None else int((prepared.f0 > 0).sum())
            frames = prepared.num_frames if prepared.f0 is not None else 0
            reason = self.keep.reason(frames, tokens, voiced)
            if reason is not None:
                raise UnusableUtterance(f"filtered out: {reason}")
            item: dict[str, Any] = {
                "id": utterance.id,
                "speaker": utterance.speaker,
                "language": utterance.language,
                "text": utterance.text or "",
                "audio": prepared.audio,
            }
            if self.model != "speechsr":
                if self._semantic is None:
                    self._semantic = SemanticFeatures(
                        name_or_path=self.semantic_model, layer=self.semantic_layer, device=self.device
                    )
                item["semantic"] = self._semantic(prepared.audio)
                item["f0"] = np.ascontiguousarray(prepared.f0, dtype=np.float32)
            if self.model == "ttv":
                item["tokens"] = np.ascontiguousarray(prepared.tokens, dtype=np.int64)
        except UnusableUtterance as error:
            logger.warning("skipped %s (%s): %s", utterance.id, utterance.path, error)
            return None
        return item


def _is_remote(output_dir: str) -> bool:
    return "://" in output_dir


def write_streaming_dataset(
    utterances: Sequence[Utterance],
    output_dir: str | os.PathLike,
    writer: StreamingItemWriter,
    *,
    num_workers: int = 1,
    chunk_bytes: str | int = "64MB",
    num_nodes: int | None = None,
    node_rank: int | None = None,
    start_method: str | None = None,
    verbose: bool = False,
) -> str:
    """Write ``utterances`` as a litdata dataset in ``output_dir`` (this node's share when multi-node).

    ``writer`` turns each utterance into an item (the model kind, its features and filters).
    Every node must pass the same ``utterances`` in the same order and the same ``num_workers``
    (chunk names carry ``node_rank * num_workers + worker``). ``start_method`` is how litdata starts
    its workers; None means ``fork`` on Linux (a worker is up in a second instead of re-importing
    torch; the writer gives each worker one torch thread, which makes forking safe) and ``spawn``
    elsewhere. Returns a one-line summary.

    - One node: ``litdata.optimize`` with ``use_checkpoint=True``, so an interrupted run resumes.
    - Several nodes, local or shared folder: each node runs litdata in its own ``.nodes/<rank>/``
      folder (resumable the same way; litdata's checkpoints and merges are not safe for several
      nodes in one folder), then moves its chunks and ``<rank>-index.json`` into ``output_dir``;
      the last node waits for every node's index and writes ``index.json``. A finished node
      re-run is a no-op.
    - Several nodes, object storage (``s3://`` …): litdata's own multi-node path (the last node
      waits for the others and merges); litdata cannot checkpoint it, so a failed node reruns.
    """
    overrides = {"DATA_OPTIMIZER_NUM_NODES": num_nodes, "DATA_OPTIMIZER_NODE_RANK": node_rank}
    with _environment({key: str(value) for key, value in overrides.items() if value is not None}):
        return _write_streaming_dataset(
            utterances, str(output_dir), writer, num_workers, chunk_bytes, start_method, verbose
        )


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables (litdata reads the node count and rank there), restoring them after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _write_streaming_dataset(
    utterances: Sequence[Utterance],
    output: str,
    writer: StreamingItemWriter,
    num_workers: int,
    chunk_bytes: str | int,
    start_method: str | None,
    verbose: bool,
) -> str:
    import litdata

    nodes = int(os.environ.get("DATA_OPTIMIZER_NUM_NODES", "1"))
    rank = int(os.environ.get("DATA_OPTIMIZER_NODE_RANK", "0"))
    if not 0 <= rank < nodes:
        raise ValueError(f"node rank {rank} is outside 0..{nodes - 1}; set --node-rank below --num-nodes")

    if start_method is None:
        start_method = "fork" if sys.platform.startswith("linux") else "spawn"
    remote = _is_remote(output)
    start = time.perf_counter()
    # JSON-serialisable inputs: litdata's checkpoints record them.
    inputs = [utterance.to_dict() for utterance in utterances]
    options = {
        "num_workers": num_workers,
        "chunk_bytes": chunk_bytes,
        "verbose": verbose,
        "start_method": start_method,
    }

    if nodes == 1 or remote:
        if not remote and (Path(output) / INDEX_FILE).is_file():
            return f"{output} already holds a finished dataset; nothing to do"
        litdata.optimize(fn=writer, inputs=inputs, output_dir=output, use_checkpoint=nodes == 1, **options)
    else:
        out = Path(output)
        node_index = out / f"{rank}-{INDEX_FILE}"
        if not node_index.is_file():
            private = out / ".nodes" / str(rank)
            litdata.optimize(
                fn=writer, inputs=inputs, output_dir=str(private), use_checkpoint=True, **options
            )
            _publish_node(private, out, rank)
            with contextlib.suppress(OSError):
                private.parent.rmdir()  # only succeeds once every node has published
        if rank == nodes - 1:
            _merge_node_indexes(out, nodes)
    seconds = time.perf_counter() - start
    return f"node {rank} of {nodes}: done in {seconds:.1f} s ({len(utterances)} utterances in the corpus)"


def _publish_node(private: Path, out: Path, rank: int) -> None:
    """Move a node's chunks, then its ``<rank>-index.json`` (last: it marks the node done), into ``out``."""
    for chunk in sorted(private.glob("chunk-*.bin")):
        target = out / chunk.name
        if target.exists():
            raise RuntimeError(
                f"{target} already exists: two nodes wrote the same chunk name; give every node the "
                "same --num-workers and a distinct --node-rank"
            )
        os.replace(chunk, target)
    index = private / f"{rank}-{INDEX_FILE}"
    if not index.is_file():
        raise RuntimeError(f"litdata left no {index.name} in {private}; the node's run did not finish")
    os.replace(index, out / index.name)
    shutil.rmtree(private, ignore_errors=True)


def _merge_node_indexes(output_dir: Path, num_nodes: int, timeout_s: float = NODE_INDEX_WAIT_S) -> None:
    """Wait for every node's ``<rank>-index.json`` in ``output_dir`` and write ``index.json`` from them."""
    node_files = [output_dir / f"{node}-{INDEX_FILE}" for node in range(num_nodes)]
    deadline = time.monotonic() + timeout_s
    while not all(path.is_file() for path in node_files):
        if time.monotonic() > deadline:
            missing = [path.name for path in node_files if not path.is_file()]
            raise TimeoutError(f"nodes never wrote {missing} in {output_dir}; did every node run?")
        time.sleep(0.5)
    chunks: list[dict] = []
    config = None
    for path in node_files:
        content = json.loads(path.read_text())
        if config is None:
            config = content["config"]
        elif content["config"]["data_format"] != config["data_format"]:
            raise RuntimeError(
                f"{path.name} holds items of another format; were the nodes run with one --model?"
            )
        chunks.extend(content["chunks"])
    temp = output_dir / f"{INDEX_FILE}.tmp-{os.getpid()}"
    temp.write_text(
        json.dumps({"chunks": chunks, "config": config, "updated_at": str(time.time())}, sort_keys=True)
    )
    os.replace(temp, output_dir / INDEX_FILE)
    logger.info("%s: index.json lists %d chunks from %d nodes", output_dir, len(chunks), num_nodes)


def open_streaming_dataset(input_dir: str | os.PathLike, *, shuffle: bool = True, seed: int = 42, **kwargs):
    """A ``litdata.StreamingDataset`` over a dataset written by :func:`write_streaming_dataset`.

    ``drop_last=True`` under DDP keeps every rank at the same number of items (else a rank waits
    forever for the others' gradients); extra ``kwargs`` go to ``StreamingDataset``.
    """
    import litdata

    return litdata.StreamingDataset(str(input_dir), shuffle=shuffle, seed=seed, **kwargs)


def is_streaming_dataset(path: str | os.PathLike) -> bool:
    """True when ``path`` is a remote URL or a folder holding a litdata ``index.json``."""
    path = str(path)
    return _is_remote(path) or (Path(path) / INDEX_FILE).is_file()
