"""The per-query feature store: Zarr v3 shards + a Parquet index.

Layout of a store folder::

    meta.json                 dims, dtype, class list, source checkpoint, ...
    index.parquet             one row per image: image_id, shard, row_start, row_count
    shards/<name>/            one Zarr v3 group per writer (a DDP rank)
        features  (N, D)      float16 / float32, chunked by rows for sequential reads
        label     (N,)        int32 category id of the matched GT segment, -1 = no object
        image_id  (N,)        int64
        query_index (N,)      int16
        mask_iou  (N,)        float32 IoU with the matched GT mask (0 when unmatched)
        score     (N,)        float32 the segmenter's best seen-class probability
      and, when masks are kept (validation):
        masks     (M, Q, h, w) float16 mask logits at 1/4 input resolution
        mask_image_id (M,), valid (M, 2), orig_size (M, 2)

Each writer owns its shard (no locking) and writes it under a temporary name, renamed
when complete; the store itself appears (rename) only once every shard and the index are
written, so a reader never sees a half-written store.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from zeroseg.atomic import replace_dir, write_json, written
from zeroseg.errors import DataError

NO_OBJECT = -1
VIEW_STRIDE = 2 ** 40  # augmented view k of image i is stored as image i + k * VIEW_STRIDE (dump.augment_passes)
RECORD_FIELDS = {"label": np.int32, "image_id": np.int64, "query_index": np.int16, "mask_iou": np.float32,
                 "score": np.float32}


class ShardWriter:
    """Appends per-query records (and optionally per-image masks) to one shard.

    Buffers up to ``chunk_rows`` rows in memory, then appends a whole chunk to Zarr, so
    memory stays bounded whatever the dataset size."""

    def __init__(self, store_dir: str | os.PathLike, name: str, dim: int, dtype: str = "float16",
                 chunk_rows: int = 4096, mask_shape: tuple[int, int, int] | None = None) -> None:
        self.final = Path(store_dir) / "shards" / name
        self.tmp = self.final.with_name(f".{name}.tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.group = zarr.open_group(str(self.tmp), mode="w", zarr_format=3)
        self.dim, self.chunk_rows = dim, chunk_rows
        # features barely compress (float noise: ~8% with zstd) and compression costs 10x in write
        # speed, so they are stored raw; the small per-record columns keep zarr's default codec
        self.arrays = {"features": self.group.create_array("features", shape=(0, dim), chunks=(chunk_rows, dim),
                                                           dtype=dtype, compressors=None)}
        for k, dt in RECORD_FIELDS.items():
            self.arrays[k] = self.group.create_array(k, shape=(0,), chunks=(chunk_rows,), dtype=dt)
        self.buf: dict[str, list[np.ndarray]] = {k: [] for k in self.arrays}
        self.buffered = 0
        self.rows = 0
        self.images: list[tuple[int, int, int]] = []  # (image_id, row_start, row_count)
        self.mask_shape = mask_shape
        if mask_shape is not None:
            q, h, w = mask_shape
            self.masks = self.group.create_array("masks", shape=(0, q, h, w), chunks=(16, q, h, w), dtype="float16")
            self.mask_meta = {k: self.group.create_array(k, shape=(0,) + s, chunks=(1024,) + s, dtype="int64")
                              for k, s in (("mask_image_id", ()), ("valid", (2,)), ("orig_size", (2,)))}

    def add_image(self, image_id: int, features: np.ndarray, records: dict[str, np.ndarray],
                  masks: np.ndarray | None = None, valid: tuple[int, int] | None = None,
                  orig_size: tuple[int, int] | None = None) -> None:
        """features (Q, D); records: RECORD_FIELDS without image_id, each (Q,); masks (Q, h, w)."""
        q = features.shape[0]
        if features.shape[1] != self.dim:
            raise DataError(f"image {image_id}: features have dim {features.shape[1]}, store expects {self.dim}")
        if not np.isfinite(features).all():
            raise DataError(f"image {image_id}: non-finite features from the segmenter")
        self.buf["features"].append(features)
        self.buf["image_id"].append(np.full(q, image_id, np.int64))
        for k in RECORD_FIELDS:
            if k != "image_id":
                self.buf[k].append(np.asarray(records[k]))
        self.images.append((image_id, self.rows + self.buffered, q))
        self.buffered += q
        if masks is not None:
            if self.mask_shape is None:
                raise ValueError("this shard was opened without mask_shape")
            self.masks.append(masks.astype(np.float16)[None], axis=0)
            self.mask_meta["mask_image_id"].append(np.array([image_id]), axis=0)
            self.mask_meta["valid"].append(np.array([valid]), axis=0)
            self.mask_meta["orig_size"].append(np.array([orig_size]), axis=0)
        if self.buffered >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        for k, arr in self.arrays.items():
            arr.append(np.concatenate(self.buf[k]).astype(arr.dtype), axis=0)
            self.buf[k] = []
        self.rows += self.buffered
        self.buffered = 0
        written()  # the test hook: one chunk in the temporary shard

    def close(self) -> list[tuple[int, int, int]]:
        """Flush and move the shard into place; returns its (image_id, row_start, row_count)."""
        self.flush()
        written()  # the test hook: the shard is complete under its temporary name
        replace_dir(self.tmp, self.final)
        return self.images

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def finalize_store(tmp_store: Path, final: Path, meta: dict) -> None:
    """Write index.parquet + meta.json from the shards present, then rename into place."""
    rows = []
    for shard in sorted((tmp_store / "shards").iterdir()):
        if shard.name.startswith("."):
            continue
        g = zarr.open_group(str(shard), mode="r")
        ids = g["image_id"][:]
        if len(ids):
            change = np.flatnonzero(np.diff(ids)) + 1
            starts = np.concatenate([[0], change])
            counts = np.diff(np.concatenate([starts, [len(ids)]]))
            rows += [{"image_id": int(ids[s]), "shard": shard.name, "row_start": int(s), "row_count": int(c)}
                     for s, c in zip(starts, counts)]
    index = pd.DataFrame(rows, columns=["image_id", "shard", "row_start", "row_count"])
    if index["image_id"].duplicated().any():
        dup = index.loc[index["image_id"].duplicated(), "image_id"].tolist()[:5]
        raise DataError(f"{tmp_store}: images {dup} were written by more than one shard")
    index.to_parquet(tmp_store / "index.parquet", index=False)
    written()  # the test hook
    write_json(tmp_store / "meta.json", dict(meta, rows=int(index["row_count"].sum()), images=len(index)))
    written()  # the test hook: the store is complete under its temporary name
    replace_dir(tmp_store, final)


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


@dataclass
class _Shard:
    name: str
    group: zarr.Group
    offset: int
    rows: int


class FeatureStore:
    """Read API over a finished store: all labels in memory (small), features fetched on demand."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not (self.path / "meta.json").exists() or not (self.path / "index.parquet").exists():
            raise DataError(f"{self.path}: not a finished feature store (meta.json / index.parquet missing)")
        self.meta = json.loads((self.path / "meta.json").read_text())
        self.index = pd.read_parquet(self.path / "index.parquet")
        self.shards: list[_Shard] = []
        offset = 0
        for name in sorted(self.index["shard"].unique()):
            g = zarr.open_group(str(self.path / "shards" / name), mode="r")
            n = int(g["label"].shape[0])
            self.shards.append(_Shard(name, g, offset, n))
            offset += n
        self.num_rows = offset
        self._cache: dict[str, np.ndarray] = {}
        self._ranges: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def column(self, name: str) -> np.ndarray:
        """A per-record column (label, image_id, query_index, mask_iou, score) over all shards."""
        if name not in self._cache:
            parts = [s.group[name][:] for s in self.shards]
            self._cache[name] = np.concatenate(parts) if parts else np.zeros(0, RECORD_FIELDS[name])
        return self._cache[name]

    @property
    def labels(self) -> np.ndarray:
        return self.column("label")

    def class_index(self, class_ids: list[int], min_iou: float = 0.0, what: str = "the given classes") -> np.ndarray:
        """(N,) the position in ``class_ids`` of every matched query's class when its mask IoU is at
        least ``min_iou``, else -1 (no-object or below the floor). A matched label outside
        ``class_ids`` is an error (``what`` names the expected classes in its message)."""
        lab, iou = self.labels, self.column("mask_iou")
        pos = {c: i for i, c in enumerate(class_ids)}
        matched = lab != NO_OBJECT
        unknown = sorted(set(np.unique(lab[matched]).tolist()) - set(pos))
        if unknown:
            raise DataError(f"{self.path}: labels {unknown[:5]} are not {what}")
        lookup = np.full(max(pos, default=0) + 1, -1, np.int64)
        lookup[list(pos)] = list(pos.values())
        return np.where(matched & (iou >= min_iou), lookup[np.where(matched, lab, 0)], -1)

    def source_image_ids(self) -> np.ndarray:
        """(N,) the dataset image of every row (augmented views map back to their image)."""
        return self.column("image_id") % VIEW_STRIDE

    def features(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) float32 for global row numbers ``rows`` (any order, kept)."""
        rows = np.asarray(rows, np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        for s in self.shards:
            sel = np.flatnonzero((rows >= s.offset) & (rows < s.offset + s.rows))
            if len(sel):
                local = rows[sel] - s.offset
                order = np.argsort(local, kind="stable")
                uniq, inv = np.unique(local[order], return_inverse=True)
                block = s.group["features"].get_orthogonal_selection((uniq, slice(None)))
                out[sel[order]] = block[inv]
        if not np.isfinite(out).all():
            raise DataError(f"{self.path}: non-finite values among the requested features")
        return out

    def iter_sequential(self, batch_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(features (b, D) float32, labels (b,)) in storage order, ``batch_rows`` at a time."""
        for s in self.shards:
            for a in range(0, s.rows, batch_rows):
                b = min(a + batch_rows, s.rows)
                feats = s.group["features"][a:b].astype(np.float32)
                if not np.isfinite(feats).all():
                    raise DataError(f"{self.path}: non-finite values in shard {s.name}, rows {a}..{b - 1}")
                yield feats, s.group["label"][a:b]

    def check_finite(self) -> None:
        """Read every feature once (bounded memory); raise on NaN/inf before any training."""
        for _ in self.iter_sequential():
            pass

    def class_batches(self, classes: list[int], per_class: int, rng: np.random.Generator,
                      min_iou: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Endless class-balanced batches: ``per_class`` random real features of each class in
        ``classes`` (sampled with replacement across shards). Yields (features, labels).

        The rows of ``classes`` (with mask IoU >= ``min_iou``) are read once, in storage order,
        and held in memory (COCO ZSP, IoU >= 0.5: ~0.5M rows, ~0.25 GB as float16): a random
        row pick would otherwise read a whole chunk per row at every step."""
        labels, iou = self.labels, self.column("mask_iou")
        pools = {}
        for c in classes:
            rows = np.flatnonzero((labels == c) & (iou >= min_iou))
            if not len(rows):
                raise DataError(f"{self.path}: no features of class {c} (min_iou {min_iou})")
            pools[c] = rows
        held = np.unique(np.concatenate(list(pools.values())))
        cache = self.features(held).astype(np.float16 if self.meta.get("dtype") == "float16" else np.float32)
        pools = {c: np.searchsorted(held, rows) for c, rows in pools.items()}
        while True:
            pos = np.concatenate([rng.choice(pools[c], per_class) for c in classes])
            yield cache[pos].astype(np.float32), labels[held[pos]]

    def image_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(first global row, row count) of every image, in index order: (I,), (I,)."""
        offset = {s.name: s.offset for s in self.shards}
        starts = self.index["row_start"].to_numpy(np.int64) + self.index["shard"].map(offset).to_numpy(np.int64)
        return starts, self.index["row_count"].to_numpy(np.int64)

    def held_features(self) -> np.ndarray:
        """(N, D) every feature in storage order, held in memory in the store's precision (COCO
        ZSP's 4.5M float16 rows of 256: 2.3 GB)."""
        dtype = np.float16 if self.meta.get("dtype") == "float16" else np.float32
        parts = [f.astype(dtype) for f, _ in self.iter_sequential()]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype)

    def image_batch(self, step: int, images_per_batch: int, seed: int) -> np.ndarray:
        """Global row numbers of every query of the ``images_per_batch`` whole images of batch
        ``step``: the images in the order of one seeded permutation per pass over them
        (detectron2's TrainingSampler; the official PADing batch is 12 images). A function of
        the step alone, so an interrupted run resumes exactly."""
        if self._ranges is None:
            self._ranges = self.image_ranges()
        starts, counts = self._ranges
        n = len(starts)
        if not n:
            raise DataError(f"{self.path}: the store has no images")
        pos = np.arange(step * images_per_batch, (step + 1) * images_per_batch)
        pick = np.array([_permutation(seed, int(e), n)[p] for e, p in zip(pos // n, pos % n)])
        return np.concatenate([np.arange(starts[i], starts[i] + counts[i]) for i in pick])

    def mask_shards(self) -> Iterator[zarr.Group]:
        for s in self.shards:
            if "masks" in s.group:
                yield s.group
