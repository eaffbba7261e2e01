"""Class embeddings through gensim: spellings, multi-word means, sources, formats, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fixtures_data import word_vector_table, write_word_vectors

from cagnet.config import DataConfig, get_preset
from cagnet.data import class_split
from cagnet.data.toy import COLOURS, SHAPES, STUFF, toy_vector_file, toy_word_vectors
from cagnet.embeddings import class_embeddings, class_words, embed_names, load_file_vectors
from cagnet.errors import DataError

WORDS = ["potted", "plant", "tv", "monitor", "wall", "concrete", "sky", "sheep", "cat"]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@pytest.fixture
def two_files(tmp_path):
    a = word_vector_table(WORDS, 6, seed=1)
    b = word_vector_table(WORDS, 4, seed=2)
    return (write_word_vectors(tmp_path / "a.txt", WORDS, a),
            write_word_vectors(tmp_path / "b.bin", WORDS, b, kind="binary"), a, b)


def test_dataset_spellings_become_words():
    assert class_words("pottedplant") == ["potted", "plant"]
    assert class_words("tvmonitor") == ["tv", "monitor"]
    assert class_words("diningtable") == ["dining", "table"]
    assert class_words("wall-concrete") == ["wall", "concrete"]
    assert class_words("sky-other") == ["sky"]
    assert class_words("door-stuff") == ["door"]
    assert class_words("playingfield") == ["playing", "field"]
    assert class_words("red circle") == ["red", "circle"]
    assert class_words("sheep") == ["sheep"]


def test_multi_word_mean_per_source_then_concatenated_and_normalised(tmp_path, two_files):
    path_a, path_b, a, b = two_files
    dcfg = DataConfig(embeddings="gensim", embedding_sources=(str(path_a), str(path_b)))
    emb = class_embeddings(["pottedplant", "sheep", "wall-concrete"], dcfg, cache_dir=tmp_path)
    assert emb.shape == (3, 10) and emb.dtype == np.float32
    i = {w: k for k, w in enumerate(WORDS)}
    expected = np.concatenate([unit((a[i["potted"]] + a[i["plant"]]) / 2),
                               unit((b[i["potted"]] + b[i["plant"]]) / 2)]) / np.sqrt(2)
    np.testing.assert_allclose(emb[0], expected, atol=1e-5)
    np.testing.assert_allclose(emb[1, :6], unit(a[i["sheep"]]) / np.sqrt(2), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)


def test_cache_is_reused_and_invalidated_when_a_source_changes(tmp_path, two_files):
    path_a, path_b, a, b = two_files
    dcfg = DataConfig(embeddings="gensim", embedding_sources=(str(path_a),))
    first = class_embeddings(["sheep", "cat"], dcfg, cache_dir=tmp_path)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1
    np.testing.assert_array_equal(first, class_embeddings(["sheep", "cat"], dcfg,
                                                          cache_dir=tmp_path))
    import os

    write_word_vectors(path_a, WORDS, -a)
    os.utime(path_a, (1, 1))  # a different modification time, as after a real edit
    flipped = class_embeddings(["sheep", "cat"], dcfg, cache_dir=tmp_path)
    np.testing.assert_allclose(flipped, -first, atol=1e-6)


def test_missing_word_names_class_and_word_and_substitutes_fix_it(tmp_path, two_files):
    path_a = two_files[0]
    dcfg = DataConfig(embeddings="gensim", embedding_sources=(str(path_a),))
    with pytest.raises(DataError, match=r"class 'diningtable'.*'dining'.*substitutes"):
        class_embeddings(["sheep", "diningtable"], dcfg, cache_dir=tmp_path)
    by_class = class_embeddings(["diningtable"], dcfg, cache_dir=tmp_path,
                                substitutes={"diningtable": "cat"})
    by_word = class_embeddings(["diningtable"], dcfg, cache_dir=tmp_path,
                               substitutes={"dining": "cat", "table": "cat"})
    cat = class_embeddings(["cat"], dcfg, cache_dir=tmp_path)
    np.testing.assert_allclose(by_class, cat, atol=1e-6)
    np.testing.assert_allclose(by_word, cat, atol=1e-6)


def test_file_formats_kv_text_binary_and_fasttext(tmp_path):
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    vecs = word_vector_table(WORDS, 5, seed=3)
    for kind, name in (("kv", "v.kv"), ("text", "v.vec"), ("binary", "v.bin")):
        kv = load_file_vectors(write_word_vectors(tmp_path / name, WORDS, vecs, kind=kind))
        np.testing.assert_allclose(kv["sheep"], vecs[WORDS.index("sheep")], atol=1e-5)
    model = FastText(vector_size=8, min_count=1, seed=0, workers=1)
    sentences = [["sheep", "cat", "sky"], ["wall", "concrete", "plant"]] * 5
    model.build_vocab(sentences)
    model.train(sentences, total_examples=len(sentences), epochs=1)
    save_facebook_model(model, str(tmp_path / "ft.bin"))
    ft = load_file_vectors(tmp_path / "ft.bin")
    assert ft.vector_size == 8 and "sheep" in ft.key_to_index
    np.testing.assert_allclose(ft["sheep"], model.wv["sheep"], atol=1e-5)
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01 not vectors")
    with pytest.raises(DataError, match="junk.bin"):
        load_file_vectors(tmp_path / "junk.bin")
    with pytest.raises(DataError, match="does not exist"):
        load_file_vectors(tmp_path / "absent.kv")


def test_named_sources_use_a_local_file_or_refuse_to_download_offline(tmp_path, monkeypatch,
                                                                      two_files):
    monkeypatch.setenv("CAGNET_OFFLINE", "1")
    dcfg = DataConfig(embeddings="gensim", embedding_sources=("fasttext",))
    with pytest.raises(DataError, match="CAGNET_VECTORS_FASTTEXT"):
        class_embeddings(["sheep"], dcfg, cache_dir=tmp_path)
    monkeypatch.setenv("CAGNET_VECTORS_FASTTEXT", str(two_files[0]))
    emb = class_embeddings(["sheep"], dcfg, cache_dir=tmp_path)
    np.testing.assert_allclose(emb[0], unit(two_files[2][WORDS.index("sheep")]), atol=1e-5)


def test_toy_vectors_are_deterministic_word2vec_files_with_meaning(tmp_path):
    path = toy_vector_file("toy-a", tmp_path)
    header = path.read_text().splitlines()[0].split()
    assert int(header[1]) == 32  # word2vec text: "<count> <dim>"
    again = toy_vector_file("toy-a", tmp_path / "other")
    assert path.read_bytes() == again.read_bytes()
    kvs = toy_word_vectors(cache_dir=tmp_path)
    assert set(kvs) == {"toy-a", "toy-b"}
    groups = [COLOURS, SHAPES, STUFF]
    sims = []
    for kv in kvs.values():
        words = [w for g in groups for w in g]
        assert all(w in kv.key_to_index for w in words)
        within = np.mean([kv.similarity(x, y) for g in groups for x in g for y in g if x != y])
        across = np.mean([kv.similarity(x, y) for g in groups for h in groups if g is not h
                          for x in g for y in h])
        assert within > across + 0.3
        sims.append(np.array([[kv.similarity(x, y) for y in words] for x in words]))
    assert not np.allclose(kvs["toy-a"]["red"][:4], kvs["toy-b"]["red"][:4])
    assert np.corrcoef(sims[0].ravel(), sims[1].ravel())[0, 1] > 0.7  # same meaning


def test_toy_class_embeddings_fit_the_toy_model_and_relate_unseen_to_seen(tmp_path):
    cfg = get_preset("toy")
    classes = class_split(cfg.data)
    emb = class_embeddings(classes.names, cfg.data, cache_dir=tmp_path)
    assert emb.shape == (20, cfg.model.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-6)
    sim = emb @ emb.T
    names = classes.names
    for u in classes.unseen:
        colour, shape = names[u].split()
        sharing = [c for c in classes.seen if colour in names[c] or shape in names[c]]
        others = [c for c in classes.seen if c not in sharing]
        assert sim[u, sharing].mean() > sim[u, others].mean() + 0.2
    assert len(np.unique(emb.round(4), axis=0)) == 20
    one = dataclasses.replace(cfg.data, embedding_sources=("toy-a",))
    assert class_embeddings(classes.names, one, cache_dir=tmp_path).shape == (20, 32)


def test_embed_names_needs_a_source():
    with pytest.raises(DataError, match="embedding_sources"):
        embed_names(["cat"], {})
