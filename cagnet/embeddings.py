"""Class embeddings: the official release's word vectors, or built from word vectors (gensim).

``DataConfig.embeddings`` chooses:

- ``"official"``: the 600-d table of the official code (tools.py ``get_embedding`` with
  ``embedding: fastnvec``): its precomputed ``dataset/<folder>/word_vectors/fasttext.pkl``
  and ``word2vec.pkl``, downloaded once from the pinned commit and checked by SHA-256
  (`official_embeddings`). Only the datasets' own class names have rows there.
- ``"gensim"``: built from word-vector files for any class names, as described next.

A class name is turned into words (`class_words`: dataset spellings such as ``pottedplant``
or ``wall-concrete`` become ``potted plant`` and ``wall concrete``); each source's vector
of the class is the mean of its words' vectors, L2-normalised; the sources are
concatenated in ``DataConfig.embedding_sources`` order and the result is L2-normalised
again. With fastText (300) ⊕ word2vec (300) that is CaGNet's 600-d embedding; the toy
world's ``toy-a`` ⊕ ``toy-b`` give 64-d.

A source is one of

- ``"toy-a"``, ``"toy-b"``: the toy world's tables (`cagnet.data.toy.toy_word_vectors`);
- ``"fasttext"``, ``"word2vec"`` or any gensim-data model name: a file named by
  ``$CAGNET_VECTORS_FASTTEXT`` / ``$CAGNET_VECTORS_WORD2VEC`` (``$CAGNET_VECTORS_<NAME>``)
  if set, else ``gensim.downloader`` (``fasttext-wiki-news-subwords-300``,
  ``word2vec-google-news-300``; a download of 1-2 GB, refused when ``$CAGNET_OFFLINE`` is
  set);
- a file path: ``.kv`` (gensim KeyedVectors), fastText ``.bin`` (Facebook format, read
  with ``load_facebook_vectors``), word2vec ``.bin``/``.bin.gz`` (binary) or any other
  extension (word2vec text, ``.txt``/``.vec``, optionally gzipped).

Tables are cached as ``.npy`` under ``$CAGNET_CACHE/embeddings`` (default
``~/.cache/cagnet``), keyed by the class words and the sources; the official pickles lie
in ``$CAGNET_CACHE/official/<folder>/`` (``voc12``, ``context``, ``cocostuff``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cagnet.config import DataConfig
from cagnet.data.base import cache_home
from cagnet.data.toy import TOY_SOURCES, TOY_VECTOR_SEED, TOY_VECTOR_VERSION, toy_vector_file
from cagnet.errors import ConfigError, DataError
from cagnet.official import (
    OFFICIAL_COMMIT,
    OFFICIAL_FOLDERS,
    OFFICIAL_LABELS,
    OFFICIAL_REPO,
    official_ids,
)

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

GENSIM_MODELS = {
    "fasttext": "fasttext-wiki-news-subwords-300",
    "word2vec": "word2vec-google-news-300",
}

# dataset spellings that are not plain words (everything else: '-' and '_' become spaces)
SPELLINGS = {
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
    "diningtable": "dining table",
    "playingfield": "playing field",
    "waterdrops": "water drops",
}
# COCO-Stuff suffixes that mark a variant of a class rather than add meaning
_DROP_LAST = ("other", "stuff")
_FASTTEXT_MAGIC = 793712314  # first int32 of a Facebook fastText .bin


def class_words(name: str) -> list[str]:
    """The words whose vectors are averaged for class ``name``.

    ``'pottedplant'`` -> ``['potted', 'plant']``, ``'wall-concrete'`` -> ``['wall',
    'concrete']``, ``'sky-other'`` -> ``['sky']``, ``'red circle'`` -> ``['red', 'circle']``.
    """
    phrase = SPELLINGS.get(name, name)
    words = [w for w in re.split(r"[\s_\-/]+", phrase) if w]
    if len(words) > 1 and words[-1] in _DROP_LAST:
        words = words[:-1]
    return words


def _lookup(kv: KeyedVectors, word: str) -> np.ndarray | None:
    for w in (word, word.lower(), word.capitalize(), word.upper()):
        if w in kv.key_to_index:
            return np.asarray(kv[w], dtype=np.float64)
    return None


def _words_for(name: str, substitutes: Mapping[str, str]) -> list[str]:
    if name in substitutes:  # a whole class replaced by other words
        return [w for w in re.split(r"\s+", substitutes[name]) if w]
    words: list[str] = []
    for w in class_words(name):  # or single words replaced
        words += [x for x in re.split(r"\s+", substitutes.get(w, w)) if x]
    return words


def embed_names(names: Sequence[str], sources: Mapping[str, KeyedVectors],
                substitutes: Mapping[str, str] | None = None) -> np.ndarray:
    """``(K, d)`` float32 embeddings of class ``names`` from loaded word ``sources``.

    Per source: the mean of a class's word vectors, L2-normalised; the sources are
    concatenated in order and each row L2-normalised. ``substitutes`` maps a class name or
    a word to replacement words (``{"tvmonitor": "television"}``) for words a source lacks.
    A missing word raises a DataError naming the class, the word and the source.
    """
    substitutes = dict(substitutes or {})
    blocks = []
    for source, kv in sources.items():
        rows = []
        for name in names:
            vecs = []
            for w in _words_for(name, substitutes):
                v = _lookup(kv, w)
                if v is None:
                    raise DataError(
                        f"class {name!r}: the word {w!r} is not in the word vectors "
                        f"{source!r}; give other words with --word \"{name}=other words\" "
                        f"(or --word \"{w}=other word\"; in Python: class_embeddings(..., "
                        f"substitutes={{{name!r}: 'other words'}}))")
                vecs.append(v)
            if not vecs:
                raise DataError(f"class {name!r} has no words to embed; give it some with "
                                f"--word \"{name}=some words\" (in Python: substitutes=)")
            mean = np.mean(vecs, axis=0)
            rows.append(mean / max(np.linalg.norm(mean), 1e-12))
        blocks.append(np.stack(rows))
    if not blocks:
        raise DataError("no word-vector sources given; set DataConfig.embedding_sources")
    emb = np.concatenate(blocks, axis=1)
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)


def _env_path(source: str) -> Path | None:
    value = os.environ.get("CAGNET_VECTORS_" + re.sub(r"[^A-Za-z0-9]", "_", source).upper())
    return Path(value).expanduser() if value else None


def _source_id(source: str) -> str:
    """What identifies a source's content, for the cache key (no file is read)."""
    if source in TOY_SOURCES:
        return f"{source}:seed{TOY_VECTOR_SEED}:v{TOY_VECTOR_VERSION}"
    path = _env_path(source) or (Path(source).expanduser() if Path(source).expanduser().is_file()
                                 else None)
    if path is not None:
        st = path.stat()
        return f"file:{path.resolve()}:{st.st_size}:{int(st.st_mtime)}"
    return f"gensim:{GENSIM_MODELS.get(source, source)}"


def load_file_vectors(path: str | Path) -> KeyedVectors:
    """Word vectors from a file, the format told by its name and first bytes (see module doc)."""
    from gensim.models import KeyedVectors
    from gensim.models.fasttext import load_facebook_vectors

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"word-vector file {path} does not exist")
    name = path.name.lower()
    try:
        if name.endswith(".kv"):
            return KeyedVectors.load(str(path))
        if name.endswith(".bin"):
            with open(path, "rb") as f:
                magic = int.from_bytes(f.read(4), "little")
            if magic == _FASTTEXT_MAGIC:
                return load_facebook_vectors(str(path))
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        if name.endswith(".bin.gz"):
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        return KeyedVectors.load_word2vec_format(str(path), binary=False)
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read word vectors from {path} ({e}); expected a gensim .kv, "
                        "a fastText .bin, or a word2vec binary/text file") from None


def load_word_vectors(source: str, cache_dir: str | Path | None = None) -> KeyedVectors:
    """The KeyedVectors of one ``source`` (see the module doc for what a source can be)."""
    from gensim.models import KeyedVectors

    if source in TOY_SOURCES:
        return KeyedVectors.load_word2vec_format(str(toy_vector_file(source, cache_dir)),
                                                 binary=False)
    path = _env_path(source)
    if path is not None or Path(source).expanduser().is_file():
        return load_file_vectors(path or source)
    model = GENSIM_MODELS.get(source, source)
    if os.environ.get("CAGNET_OFFLINE"):
        raise DataError(f"word vectors {source!r} are not available offline (CAGNET_OFFLINE "
                        f"is set): on a connected machine download {model!r} with "
                        "gensim.downloader and save it (kv.save('X.kv')), then set "
                        f"CAGNET_VECTORS_{re.sub(r'[^A-Za-z0-9]', '_', source).upper()}=/path/"
                        "X.kv, or name a word-vector file in data.embedding_sources")
    import gensim.downloader

    try:
        return gensim.downloader.load(model)
    except ValueError:
        raise DataError(f"unknown word-vector source {source!r}: not a toy source "
                        f"({', '.join(TOY_SOURCES)}), not a file, not a gensim-data model "
                        f"(e.g. {', '.join(GENSIM_MODELS.values())})") from None
    except OSError as e:
        raise DataError(f"cannot download word vectors {model!r} ({e}); check the network "
                        f"or point CAGNET_VECTORS_{re.sub(r'[^A-Za-z0-9]', '_', source).upper()} "
                        "at a local file") from None


# tools.py get_embedding, `fastnvec`: fastText first, then word2vec
OFFICIAL_SOURCES = ("fasttext", "word2vec")
# SHA-256 of dataset/<folder>/word_vectors/<source>.pkl at OFFICIAL_COMMIT
OFFICIAL_VECTORS_SHA256 = {
    ("voc", "fasttext"): "df530d657b2674a72078bbe589831813c0a4b8db919e4f254e20bd7b91f81b36",
    ("voc", "word2vec"): "51ee0a46065bd6bb1b9196c94e9309be93b95329232422e9bcff296ce1155b11",
    ("context", "fasttext"): "5caba3f7ff578ad1de97bfe2da8c56379369280ea7663d9768b07f96a71d7283",
    ("context", "word2vec"): "ae5449ebd125fbc14cefa58ae182ed353907be613bfe7243128b1e9b44e18b27",
    ("cocostuff", "fasttext"): "5f82b621af42a3a16327bbc16271b73dbd40fa6a746ee7aeb38659309a747e64",
    ("cocostuff", "word2vec"): "cc72c3ec0252fdbb75b1c6c28fff45f2894a673024f3fb6ca92a47458da26b4b",
}


def _reconstruct_function():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles a plain numpy array and nothing else: of all globals a pickle may name, only
    ``numpy.ndarray``, ``numpy.dtype`` and ``numpy(._)core.multiarray._reconstruct`` resolve."""

    def find_class(self, module: str, name: str) -> object:
        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
        if name == "_reconstruct" and module in ("numpy.core.multiarray",
                                                 "numpy._core.multiarray"):
            return _reconstruct_function()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a word-vector pickle")


def read_array_pickle(data: bytes, what: str) -> np.ndarray:
    """The ``(N, D)`` array pickled in ``data``; a DataError if it holds anything else."""
    try:
        array = ArrayOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as e:
        raise DataError(f"{what} is not a plain numpy array pickle ({e})") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        raise DataError(f"{what} does not hold a 2-d numpy array")
    return array


def official_vectors_url(dataset: str, source: str) -> str:
    """Where ``dataset/<folder>/word_vectors/<source>.pkl`` of the pinned commit lies."""
    return (f"https://raw.githubusercontent.com/{OFFICIAL_REPO}/{OFFICIAL_COMMIT}/dataset/"
            f"{OFFICIAL_FOLDERS[dataset]}/word_vectors/{source}.pkl")


def official_vectors_file(dataset: str, source: str,
                          cache_dir: str | Path | None = None) -> Path:
    """The official ``<source>.pkl`` of ``dataset``, downloaded once into
    ``cache_dir / official / <folder>`` (default `cache_home`) and fetched again if it does
    not match its SHA-256; with ``$CAGNET_OFFLINE`` set, a missing file is refused."""
    cache = Path(cache_dir) if cache_dir is not None else cache_home()
    path = cache / "official" / OFFICIAL_FOLDERS[dataset] / f"{source}.pkl"
    url = official_vectors_url(dataset, source)
    sha = OFFICIAL_VECTORS_SHA256[(dataset, source)]
    if os.environ.get("CAGNET_OFFLINE"):
        if path.is_file():
            return path
        raise DataError(f"the official word vectors {OFFICIAL_FOLDERS[dataset]}/{source}.pkl "
                        f"are not in the cache and CAGNET_OFFLINE is set; download {url} by "
                        f"hand to {path} (SHA-256 {sha})")
    from cagnet.data.download import download

    try:
        return download(url, path, sha256=sha, progress=False)
    except DataError as e:
        raise DataError(f"cannot get the official word vectors {url} ({e}); place the file by "
                        f"hand at {path} (SHA-256 {sha})") from None


def load_official_vectors(path: str | Path, sha256: str) -> np.ndarray:
    """The ``(N, 300)`` array of an official word-vector pickle, read only once its bytes
    match ``sha256``, and then with `ArrayOnlyUnpickler`."""
    path = Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DataError(f"{path} has SHA-256 {digest}, expected {sha256}: it is not the official "
                        "file; delete it and run again online, or put the official file there")
    return read_array_pickle(data, str(path))


def official_embeddings(names: Sequence[str], dataset: str,
                        cache_dir: str | Path | None = None) -> np.ndarray:
    """``(K, 600)`` float32 official class embeddings of ``names`` (classes of ``dataset``).

    As tools.py ``get_embedding`` (``fastnvec``, ``emb_without_normal: False``): the rows of
    fasttext.pkl ⊕ word2vec.pkl are concatenated (N, 600), turned into float32 and each
    600-d row L2-normalised as a whole (``F.normalize(p=2, dim=1)``); the halves are not
    normalised apart. (VOC and COCO-Stuff pickles hold unit rows, so each half ends at norm
    1/sqrt(2); Pascal-Context's do not, and there fastText weighs more.) Row ``k`` is the
    official row of ``names[k]``, matched by name (`cagnet.official.official_ids`).
    """
    if dataset not in OFFICIAL_FOLDERS:
        raise ConfigError(f"the official release has no word vectors for {dataset!r}; set "
                          "data.embeddings='gensim' (the toy world uses its own vectors)")
    import torch
    import torch.nn.functional as F

    ids = official_ids(dataset, names)
    tables = []
    for source in OFFICIAL_SOURCES:
        path = official_vectors_file(dataset, source, cache_dir)
        table = load_official_vectors(path, OFFICIAL_VECTORS_SHA256[(dataset, source)])
        if table.shape[0] != len(OFFICIAL_LABELS[dataset]):
            raise DataError(f"{path} has {table.shape[0]} rows, expected one per official "
                            f"{dataset} class ({len(OFFICIAL_LABELS[dataset])})")
        tables.append(table)
    emb = torch.tensor(np.concatenate(tables, axis=1), dtype=torch.float32)
    return F.normalize(emb, p=2, dim=1)[ids].numpy()


def class_embeddings(names: Sequence[str], dcfg: DataConfig,
                     cache_dir: str | Path | None = None,
                     substitutes: Mapping[str, str] | None = None) -> np.ndarray:
    """``(K, d)`` float32 L2-normalised class embeddings of ``names``.

    ``dcfg.embeddings == "official"``: `official_embeddings` of ``dcfg.dataset`` (d = 600).
    ``"gensim"``: from the sources of ``dcfg.embedding_sources`` (d = the sum of their widths:
    600 for fastText ⊕ word2vec, 64 for the toy world), cached as ``.npy`` under
    ``cache_dir`` (default `cache_home`); ``substitutes`` replace words a source lacks.
    """
    if dcfg.embeddings == "official":
        if substitutes:
            raise ConfigError("substitutes apply to data.embeddings='gensim' only; the "
                              "official table has a row per class already")
        return official_embeddings(names, dcfg.dataset, cache_dir)
    if dcfg.embeddings != "gensim":
        raise ConfigError(f"unknown data.embeddings {dcfg.embeddings!r}; choose 'official' or "
                          "'gensim'")
    cache = Path(cache_dir) if cache_dir is not None else cache_home()
    sources = list(dcfg.embedding_sources)
    key = json.dumps({"words": [_words_for(n, dict(substitutes or {})) for n in names],
                      "sources": [_source_id(s) for s in sources]})
    path = cache / "embeddings" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npy"
    if path.is_file():
        emb = np.load(path)
        if emb.shape[0] == len(names):
            return emb
    emb = embed_names(names, {s: load_word_vectors(s, cache) for s in sources}, substitutes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, emb)
    os.replace(tmp, path)
    return emb
