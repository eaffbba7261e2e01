"""Downloading the paper's datasets: canonical URLs, checksums, resumable transfers, extraction.

``fetch("voc")`` puts Pascal-VOC 2012 and SBD under ``data_home() / "voc"`` (or ``root``) in
the layout `cagnet.data.voc` reads; likewise ``"context"`` and ``"cocostuff"``. Archives go to
``ROOT/downloads/`` and are kept, so an interrupted run resumes (HTTP Range) where it stopped
and a finished archive is not fetched twice. Every archive with a published checksum is
verified; where none is known the comment says so and only a non-empty file is required.
Nothing here runs at import time or in the tests' normal course.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cagnet.data.base import data_home
from cagnet.errors import DataError


@dataclass(frozen=True)
class Resource:
    """One file to download: mirrors tried in order, checksums, where to extract it."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extract_to: str | None = "."  # folder under ROOT to unpack into; None: copy the file there


_CONTEXT = "http://www.cs.stanford.edu/~roozbeh/pascal-context/"
_COCO = "http://images.cocodataset.org/zips/"
RESOURCES: dict[str, tuple[Resource, ...]] = {
    "voc": (
        Resource("VOCtrainval_11-May-2012.tar",
                 ("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                  "http://pjreddie.com/media/files/VOCtrainval_11-May-2012.tar"),
                 md5="6cd6e144f989b92b3379bac3b3de84fd"),
        Resource("benchmark.tgz",
                 ("https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
                  "semantic_contours/benchmark.tgz",),
                 md5="82b4d87ceb2ed10f6038a1cba92111cb"),
    ),
    "context": (
        Resource("VOCtrainval_03-May-2010.tar",
                 ("http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",),
                 md5="da459979d0c395079b5c75ee67908abb"),
        Resource("33_context_labels.tar.gz", (_CONTEXT + "33_context_labels.tar.gz",),
                 md5="180101cfc01c71867b6686207f071eb9"),
        Resource("33_labels.txt", (_CONTEXT + "33_labels.txt",),
                 md5="8840f5439b471aecf991ac6448b826e6", extract_to=None),
    ),
    "cocostuff": (
        Resource("train2017.zip", (_COCO + "train2017.zip",),
                 md5="cced6f7f71b7629ddf16f17bbcfab6b2", extract_to="images"),
        Resource("val2017.zip", (_COCO + "val2017.zip",),
                 md5="442b8da7639aecaf257c1dceb8ba8c80", extract_to="images"),
        # No checksum is published for the stuff+thing maps (about 659 MB): only a
        # non-empty, readable zip is required.
        Resource("stuffthingmaps_trainval2017.zip",
                 ("http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
                  "stuffthingmaps_trainval2017.zip",),
                 extract_to="annotations"),
    ),
}


def verify(path: Path, md5: str | None = None, sha256: str | None = None,
           size: int | None = None) -> None:
    """Raise a DataError if ``path`` is empty or differs in size or checksum from the given ones."""
    actual = path.stat().st_size
    if actual == 0:
        raise DataError(f"{path} is empty")
    if size is not None and actual != size:
        raise DataError(f"{path} has {actual:,} bytes, expected {size:,}")
    if md5 is None and sha256 is None:
        return
    h_md5, h_sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            if md5:
                h_md5.update(block)
            if sha256:
                h_sha.update(block)
    for name, want, h in (("md5", md5, h_md5), ("sha256", sha256, h_sha)):
        if want and h.hexdigest() != want.lower():
            raise DataError(f"{path} has {name} {h.hexdigest()}, expected {want}")


def _transfer(url: str, part: Path, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (HTTP Range from its current size)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "cagnet-downloader"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to fetch: the part is complete
            return
        raise
    with response:
        status = getattr(response, "status", None)
        if have and status != 206:  # the server (or file://) ignored the range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length else None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.stem)
        with open(part, "ab" if have else "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
                if bar is not None:
                    bar.update(len(block))
        if bar is not None:
            bar.close()


def download(urls: str | Sequence[str], dest: str | Path, md5: str | None = None,
             sha256: str | None = None, size: int | None = None,
             progress: bool = True) -> Path:
    """Download ``urls`` (mirrors, tried in order) to ``dest``, resuming a ``dest.part``.

    A finished ``dest`` that verifies is returned at once; one that does not is fetched
    again. The part file is verified before it is renamed to ``dest``; on a checksum
    mismatch it is deleted and a DataError says so.
    """
    dest = Path(dest)
    urls = [urls] if isinstance(urls, str) else list(urls)
    if dest.exists():
        try:
            verify(dest, md5, sha256, size)
            return dest
        except DataError:
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in urls:
        try:
            _transfer(url, part, progress)
            break
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
    else:
        raise DataError(f"could not download {dest.name} ({'; '.join(errors)}). Check the "
                        f"network, or download it by hand to {dest} and run again")
    try:
        verify(part, md5, sha256, size)
    except DataError as e:
        part.unlink(missing_ok=True)
        raise DataError(f"the download of {dest.name} is corrupt ({e}); it was deleted: "
                        "run again to fetch it anew") from None
    part.replace(dest)
    return dest


def extract(archive: Path, into: Path) -> None:
    """Unpack a .tar/.tar.gz/.tgz/.zip ``archive`` into ``into`` (safe paths only), once."""
    marker = into / f".{archive.name}.extracted"
    if marker.exists():
        return
    into.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(into)
        else:
            with tarfile.open(archive) as t:
                t.extractall(into, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        raise DataError(f"cannot extract {archive} ({e}); delete it and download again"
                        ) from None
    marker.touch()


def fetch(dataset: str, root: str | Path | None = None, progress: bool = True) -> Path:
    """Download, verify and unpack ``dataset`` ("voc" | "context" | "cocostuff") into ``root``.

    ``root`` defaults to ``data_home() / dataset`` (``$CAGNET_DATA``). Returns the root,
    ready for ``DataConfig(dataset=..., root=...)``.
    """
    if dataset not in RESOURCES:
        raise DataError(f"nothing to download for {dataset!r}; choose one of "
                        f"{', '.join(RESOURCES)} (the toy world is generated, not downloaded)")
    root = Path(root).expanduser() if root is not None else data_home() / dataset
    for r in RESOURCES[dataset]:
        path = download(r.urls, root / "downloads" / r.filename, r.md5, r.sha256, r.size,
                        progress)
        if r.extract_to is None:
            shutil.copyfile(path, root / r.filename)
        else:
            extract(path, root / r.extract_to)
    return root
