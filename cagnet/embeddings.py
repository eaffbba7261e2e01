"""Class embeddings from word vectors (gensim), as CaGNet builds them.

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
``~/.cache/cagnet``), keyed by the class words and the sources.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cagnet.config import DataConfig
from cagnet.data.base import cache_home
from cagnet.data.toy import TOY_SOURCES, TOY_VECTOR_SEED, TOY_VECTOR_VERSION, toy_vector_file
from cagnet.errors import DataError

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
                        f"{source!r}; pass substitutes={{{name!r}: 'other words'}} (or "
                        f"{{{w!r}: 'other word'}}) to class_embeddings")
                vecs.append(v)
            if not vecs:
                raise DataError(f"class {name!r} has no words to embed; give it substitutes")
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
        raise DataError(f"word vectors {source!r} are not available offline; download "
                        f"{model!r} with gensim.downloader, save it (kv.save('X.kv')) and set "
                        f"CAGNET_VECTORS_{re.sub(r'[^A-Za-z0-9]', '_', source).upper()}=X.kv")
    import gensim.downloader

    try:
        return gensim.downloader.load(model)
    except ValueError:
        raise DataError(f"unknown word-vector source {source!r}: not a toy source "
                        f"({', '.join(TOY_SOURCES)}), not a file, not a gensim-data model "
                        f"(e.g. {', '.join(GENSIM_MODELS.values())})") from None
    except OSError as e:
        raise DataError(f"cannot download word vectors {model!r} ({e}); check the network "
                        f"or point CAGNET_VECTORS_{source.upper()} at a local file") from None


def class_embeddings(names: Sequence[str], dcfg: DataConfig,
                     cache_dir: str | Path | None = None,
                     substitutes: Mapping[str, str] | None = None) -> np.ndarray:
    """``(K, d)`` float32 L2-normalised class embeddings of ``names`` from the sources of
    ``dcfg.embedding_sources`` (d = the sum of their widths: 600 for fastText ⊕ word2vec,
    64 for the toy world). Cached as ``.npy`` under ``cache_dir`` (default `cache_home`)."""
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
