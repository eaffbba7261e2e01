"""The official class embeddings: download, checksum, array-only unpickling, row order."""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest

from cagnet import embeddings
from cagnet.config import DataConfig, get_preset
from cagnet.data.splits import CONTEXT_CLASSES, SPLITS, VOC_CLASSES
from cagnet.embeddings import (
    class_embeddings,
    official_embeddings,
    official_vectors_url,
    read_array_pickle,
)
from cagnet.errors import ConfigError, DataError
from cagnet.official import (
    OFFICIAL_COMMIT,
    OFFICIAL_LABELS,
    OFFICIAL_LABELS_SHA256,
    OFFICIAL_NUM_NOVEL,
    OFFICIAL_ORDER,
    official_ids,
)

FOLDER = {"voc": "voc12", "context": "context"}


def legacy_pickle(array: np.ndarray) -> bytes:
    """``array`` pickled as the official files are: numpy.core.multiarray._reconstruct."""
    data = pickle.dumps(array, protocol=3)  # GLOBAL opcodes: names in plain text
    return data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def put_official(cache, monkeypatch, dataset: str, source: str, data: bytes) -> None:
    """Place ``data`` as the official ``source`` pickle of ``dataset`` and trust its hash."""
    path = cache / "official" / FOLDER[dataset] / f"{source}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    monkeypatch.setitem(embeddings.OFFICIAL_VECTORS_SHA256, (dataset, source),
                        hashlib.sha256(data).hexdigest())


@pytest.fixture
def voc_tables(tmp_path, monkeypatch):
    """Fake VOC tables, 21 x 300 each: fastText rows of norm 3, word2vec rows of norm 1."""
    rng = np.random.default_rng(0)
    ft, w2v = rng.normal(size=(21, 300)), rng.normal(size=(21, 300))
    ft *= 3 / np.linalg.norm(ft, axis=1, keepdims=True)
    w2v /= np.linalg.norm(w2v, axis=1, keepdims=True)
    put_official(tmp_path, monkeypatch, "voc", "fasttext", legacy_pickle(ft))
    put_official(tmp_path, monkeypatch, "voc", "word2vec", pickle.dumps(w2v, protocol=4))
    return ft, w2v


def test_rows_follow_the_class_names_and_the_600d_row_is_normalised(tmp_path, voc_tables):
    ft, w2v = voc_tables
    names = ["tvmonitor", "pottedplant", "background", "cat"]
    emb = official_embeddings(names, "voc", cache_dir=tmp_path)
    assert emb.shape == (4, 600) and emb.dtype == np.float32
    ids = [20, 16, 0, 8]  # labels_refined.txt: tv, potted_plant, background, cat
    full = np.concatenate([ft[ids], w2v[ids]], axis=1)
    np.testing.assert_allclose(emb, full / np.linalg.norm(full, axis=1, keepdims=True),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)
    # tools.py normalises the concatenation, not each half: 3 : 1 stays 3 : 1
    np.testing.assert_allclose(np.linalg.norm(emb[:, :300], axis=1), 3 / np.sqrt(10), atol=1e-6)


def test_class_embeddings_uses_the_official_table_by_default(tmp_path, voc_tables):
    dcfg = DataConfig(dataset="voc")
    assert dcfg.embeddings == "official"
    emb = class_embeddings(list(VOC_CLASSES), dcfg, cache_dir=tmp_path)
    np.testing.assert_array_equal(emb, official_embeddings(VOC_CLASSES, "voc", tmp_path))
    with pytest.raises(ConfigError, match="gensim"):
        class_embeddings(["cat"], dcfg, cache_dir=tmp_path, substitutes={"cat": "kitten"})
    with pytest.raises(ConfigError, match="unknown data.embeddings"):
        class_embeddings(["cat"], DataConfig(dataset="voc", embeddings="glove"), tmp_path)


def test_context_skips_the_unlabelled_row(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    tables = {s: rng.normal(size=(34, 300)) for s in ("fasttext", "word2vec")}
    tables["word2vec"] = tables["word2vec"].astype(np.float32)  # as the official file
    for source, table in tables.items():
        put_official(tmp_path, monkeypatch, "context", source, legacy_pickle(table))
    emb = official_embeddings(CONTEXT_CLASSES, "context", cache_dir=tmp_path)
    full = np.concatenate([tables["fasttext"], tables["word2vec"]], axis=1)[1:]
    np.testing.assert_allclose(emb, full / np.linalg.norm(full, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_names_without_an_official_row_and_the_toy_world_are_refused(tmp_path, voc_tables):
    with pytest.raises(DataError, match="'wheel' is not an official voc class"):
        official_embeddings(["cat", "wheel"], "voc", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="gensim"):
        official_embeddings(["red circle"], "toy", cache_dir=tmp_path)
    assert get_preset("toy").data.embeddings == "gensim"


def test_a_file_that_differs_from_its_checksum_is_not_read(tmp_path, voc_tables):
    path = tmp_path / "official" / "voc12" / "word2vec.pkl"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match="SHA-256 .* expected"):
        official_embeddings(["cat"], "voc", cache_dir=tmp_path)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_only_numpy_arrays_unpickle_even_with_a_matching_checksum(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(marker), protocol=4)
    with pytest.raises(DataError, match="system is not allowed"):
        read_array_pickle(evil, "evil.pkl")
    put_official(tmp_path, monkeypatch, "voc", "fasttext", evil)
    put_official(tmp_path, monkeypatch, "voc", "word2vec", evil)
    with pytest.raises(DataError, match="not allowed"):
        official_embeddings(["cat"], "voc", cache_dir=tmp_path)
    assert not marker.exists()
    for harmless_but_wrong in ({"cat": 1}, np.zeros(3)):
        with pytest.raises(DataError, match="2-d numpy array"):
            read_array_pickle(pickle.dumps(harmless_but_wrong, protocol=4), "x.pkl")


def test_offline_without_the_file_names_the_url_and_where_to_put_it(tmp_path):
    assert os.environ.get("CAGNET_OFFLINE")  # tests/conftest.py
    with pytest.raises(DataError) as err:
        official_embeddings(["cat"], "voc", cache_dir=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "CAGNET_OFFLINE" in msg
    assert official_vectors_url("voc", "fasttext") in msg
    assert f"{OFFICIAL_COMMIT}/dataset/voc12/word_vectors/fasttext.pkl" in msg
    assert str(tmp_path / "official" / "voc12" / "fasttext.pkl") in msg


def test_download_is_verified_and_a_failure_says_how_to_place_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CAGNET_OFFLINE")
    rng = np.random.default_rng(2)
    served = tmp_path / "served"
    served.mkdir()
    for source in ("fasttext", "word2vec"):
        data = legacy_pickle(rng.normal(size=(21, 300)))
        (served / f"{source}.pkl").write_bytes(data)
        monkeypatch.setitem(embeddings.OFFICIAL_VECTORS_SHA256, ("voc", source),
                            hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(embeddings, "official_vectors_url",
                        lambda dataset, source: (served / f"{source}.pkl").as_uri())
    cache = tmp_path / "cache"
    assert official_embeddings(["cat"], "voc", cache_dir=cache).shape == (1, 600)
    assert (cache / "official" / "voc12" / "word2vec.pkl").is_file()
    monkeypatch.setitem(embeddings.OFFICIAL_VECTORS_SHA256, ("voc", "fasttext"), "0" * 64)
    with pytest.raises(DataError, match="place the file by hand at .*fasttext.pkl"):
        official_embeddings(["cat"], "voc", cache_dir=cache)


def test_label_lists_and_orders_reproduce_the_official_files():
    for dataset, labels in OFFICIAL_LABELS.items():
        text = "\n".join(f"{i}\t{name}" for i, name in enumerate(labels))
        assert hashlib.sha256(text.encode()).hexdigest() == OFFICIAL_LABELS_SHA256[dataset]
        order = OFFICIAL_ORDER[dataset]
        assert len(set(order)) == len(order) == {"voc": 20, "context": 33,
                                                 "cocostuff": 182}[dataset]
        novel = order[-OFFICIAL_NUM_NOVEL[dataset]:]
        assert sorted(novel) == sorted(official_ids(dataset, SPLITS[dataset]["cagnet"]))
