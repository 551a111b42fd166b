"""Feature-store throughput: rows/s written and read back through our Zarr shards vs a raw
NumPy memmap of the same float16 matrix, in one run.

    python bench/dump_throughput.py [--rows 2000000] [--dim 128]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from zeroseg.features.store import FeatureStore, ShardWriter, finalize_store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=100, help="rows per image (queries)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dump-bench-"))
    q, n_img = args.queries, args.rows // args.queries
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n_img * q, args.dim)).astype(np.float16)  # made before timing: we time I/O
    rec = {"label": np.zeros(q, np.int32), "mask_iou": np.zeros(q, np.float32), "score": np.zeros(q, np.float32),
           "query_index": np.arange(q, dtype=np.int16)}

    t = time.perf_counter()
    w = ShardWriter(tmp / ".s.tmp", "rank-000", args.dim, "float16", chunk_rows=16384)
    for i in range(n_img):
        w.add_image(i, data[i * q:(i + 1) * q], rec)
    w.close()
    finalize_store(tmp / ".s.tmp", tmp / "s", {"dim": args.dim})
    t_zw = time.perf_counter() - t

    t = time.perf_counter()
    mm = np.lib.format.open_memmap(tmp / "raw.npy", mode="w+", dtype=np.float16, shape=(n_img * q, args.dim))
    for i in range(n_img):
        mm[i * q:(i + 1) * q] = data[i * q:(i + 1) * q]
    mm.flush()
    del mm
    t_mw = time.perf_counter() - t

    t = time.perf_counter()
    total = sum(len(f) for f, _ in FeatureStore(tmp / "s").iter_sequential(batch_rows=65536))
    t_zr = time.perf_counter() - t
    t = time.perf_counter()
    mm = np.load(tmp / "raw.npy", mmap_mode="r")
    total2 = sum(len(np.asarray(mm[a:a + 65536], np.float32)) for a in range(0, len(mm), 65536))
    t_mr = time.perf_counter() - t
    assert total == total2 == n_img * q
    zsize = sum(p.stat().st_size for p in (tmp / "s").rglob("*") if p.is_file())
    rows = n_img * q
    print(f"{rows} rows x {args.dim} float16")
    print(f"write: zarr {rows / t_zw:,.0f} rows/s   memmap {rows / t_mw:,.0f} rows/s   zarr/memmap {t_mw / t_zw:.2f}x")
    print(f"read : zarr {rows / t_zr:,.0f} rows/s   memmap {rows / t_mr:,.0f} rows/s   zarr/memmap {t_mr / t_zr:.2f}x")
    print(f"size : zarr {zsize / 2**20:.1f} MiB   memmap {(tmp / 'raw.npy').stat().st_size / 2**20:.1f} MiB")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
