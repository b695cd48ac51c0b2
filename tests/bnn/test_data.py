"""Tests of bnn.data: the shipped files, the loaders, splits, spins, registry, bad data."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bnn.data import (
    A1A_PAPER_FEATURES,
    A1A_REFERENCE_SEL3_COLUMNS,
    SHIPPED_DATASETS,
    GraphDataset,
    TabularDataset,
    available_datasets,
    default_data_root,
    get_dataset,
    load_a1a,
    load_breast_cancer,
    load_digits,
    load_karate,
    load_libsvm,
    load_planetoid,
    majority_rate,
    parse_libsvm,
    read_dataset_file,
    split_tabular,
)
from bnn.training import CONFIG_NAME, METRICS_NAME, SUMMARY_NAME
from qsgd.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DIR = REPO / "bnn" / "datasets"


@pytest.fixture(scope="module", autouse=True)
def _shipped_data_only():
    """Every loader here reads the files shipped in the package, whatever the caller's env."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("QSGD_DATA_ROOT", raising=False)
        yield


def _shipped_text(name: str) -> str:
    return read_dataset_file(name)[1].decode()


def _is_spin(t: torch.Tensor) -> bool:
    return bool(((t == 1) | (t == -1)).all())


@pytest.fixture(scope="module")
def a1a_raw() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    return tuple(parse_libsvm(read_dataset_file(n)[1]) for n in ("a1a", "a1a.t"))


@pytest.fixture(scope="module")
def a1a() -> TabularDataset:
    return load_a1a(seed=0)


@pytest.fixture(scope="module")
def cora() -> GraphDataset:
    return load_planetoid("cora")


# --------------------------------------------------------------------------- a1a


def test_libsvm_counts_match_manifest(a1a_raw):
    (x, y), (xt, yt) = a1a_raw
    assert x.shape == (1605, 123) and xt.shape == (30956, 123)
    assert int((y == 1).sum()) == 395 and int((y == -1).sum()) == 1210
    assert int((yt == 1).sum()) == 7446 and int((yt == -1).sum()) == 23510
    assert int(x.sum()) == 22249 and int(xt.sum()) == 429343
    assert set(np.unique(x)) == {0.0, 1.0}
    assert x.sum(axis=1).min() == 12 and x.sum(axis=1).max() == 14
    # column j is LIBSVM feature j + 1: a1a uses 1..119, a1a.t all 1..123
    assert np.flatnonzero(x.sum(axis=0)).max() == 118
    assert (xt.sum(axis=0) > 0).all()


def test_libsvm_matches_a_plain_line_parse(a1a_raw):
    (x, y), _ = a1a_raw
    lines = _shipped_text("a1a").splitlines()[:50]
    for i, line in enumerate(lines):
        label, *toks = line.split()
        assert y[i] == int(label)
        cols = sorted(int(t.split(":")[0]) - 1 for t in toks)
        assert np.flatnonzero(x[i]).tolist() == cols


def test_a1a_split_counts_stratified_and_majority(a1a):
    assert a1a.num_features == 123 and a1a.num_classes == 2
    n_tr, n_va = a1a.x_train.shape[0], a1a.x_val.shape[0]
    assert n_tr + n_va == 1605 and n_va == 161
    assert int(a1a.y_train.sum() + a1a.y_val.sum()) == 395
    # stratified: the validation positive rate is within one row of the overall rate
    assert abs(int(a1a.y_val.sum()) - 395 / 1605 * n_va) <= 1
    assert a1a.x_test.shape == (30956, 123) and int(a1a.y_test.sum()) == 7446
    assert a1a.majority_rate == pytest.approx(23510 / 30956)
    assert round(a1a.majority_rate, 3) == 0.759
    assert a1a.y_train.dtype == torch.int64 and a1a.x_train.dtype == torch.float32


def test_a1a_spins_are_exactly_pm1_and_01_without(a1a, a1a_raw):
    for t in (a1a.x_train, a1a.x_val, a1a.x_test):
        assert _is_spin(t)
    plain = load_a1a(spins=False, val_fraction=0.0)
    assert plain.x_val.shape == (0, 123)
    assert torch.equal(plain.x_train, torch.as_tensor(a1a_raw[0][0]))
    assert torch.equal(plain.x_test * 2 - 1, a1a.x_test)


def test_a1a_split_is_seeded(a1a):
    again = load_a1a(seed=0)
    other = load_a1a(seed=1)
    assert torch.equal(again.x_train, a1a.x_train) and torch.equal(again.y_val, a1a.y_val)
    assert not torch.equal(other.x_val, a1a.x_val)


def test_a1a_paper_features_follow_reference_convention(a1a_raw):
    assert A1A_REFERENCE_SEL3_COLUMNS == (6, 22, 36)
    assert A1A_PAPER_FEATURES == (5, 21, 35)
    ds = load_a1a(features=A1A_PAPER_FEATURES, spins=False, val_fraction=0.0)
    assert ds.num_features == 3
    # the reference's column j holds LIBSVM feature j: rebuild its matrix naively
    lines = _shipped_text("a1a").splitlines()
    ref = np.zeros((len(lines), 123), dtype=np.float32)
    for i, line in enumerate(lines):
        keys = {int(t.split(":")[0]) for t in line.split()[1:]}
        ref[i] = [1.0 if j in keys else 0.0 for j in range(123)]
    assert np.array_equal(ds.x_train.numpy(), ref[:, list(A1A_REFERENCE_SEL3_COLUMNS)])


def test_missing_a1a_names_path_and_where_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"a1a'.*ship inside the package.*QSGD_DATA_ROOT"):
        load_a1a(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        load_libsvm(tmp_path / "nope")


def test_env_var_sets_default_root(tmp_path, monkeypatch):
    assert default_data_root() is None  # unset: the shipped copies
    monkeypatch.setenv("QSGD_DATA_ROOT", str(tmp_path))
    assert default_data_root() == tmp_path
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "cora.npz"))):
        get_dataset("cora")
    monkeypatch.setenv("QSGD_DATA_ROOT", "")  # empty counts as unset
    assert default_data_root() is None


# --------------------------------------------------------------------------- shipped files


def test_shipped_files_are_small_compressed_and_match_their_hashes():
    assert set(SHIPPED_DATASETS) == {"a1a", "a1a.t", "cora.npz", "citeseer.npz"}
    total = 0
    for name, (packaged, sha) in SHIPPED_DATASETS.items():
        raw = (SHIPPED_DIR / packaged).read_bytes()
        total += len(raw)
        data = gzip.decompress(raw) if packaged.endswith(".gz") else raw
        assert hashlib.sha256(data).hexdigest() == sha, name
        source, loaded = read_dataset_file(name)
        assert loaded == data and Path(source).name == packaged
    assert total < 600_000  # about 0.48 MB: a1a.t is 2.2 MB uncompressed
    provenance = (SHIPPED_DIR / "PROVENANCE.md").read_text()
    for name, (packaged, sha) in SHIPPED_DATASETS.items():
        assert f"| `{packaged}` |" in provenance and sha in provenance, name
    for needle in (
        "0889d1b979ec493ba4c6863a7acc591c2d949725",
        "af6abf468a772cc055bec88c52e4d6f51b7c37e3",
    ):
        assert needle in provenance  # the source commits
    assert "MIT" in provenance and "CC BY 4.0" in provenance


def test_a_corrupt_shipped_file_is_refused_naming_file_and_hashes(monkeypatch):
    wrong = "0" * 64
    monkeypatch.setitem(SHIPPED_DATASETS, "cora.npz", ("cora.npz", wrong))
    got = SHIPPED_DATASETS["citeseer.npz"][1]  # any real hash: not the one of cora
    assert got != wrong
    with pytest.raises(
        DataError, match=rf"cora\.npz' is corrupt.*must be {wrong} \(got [0-9a-f]{{64}}\)"
    ):
        load_planetoid("cora")
    with pytest.raises(ConfigError, match=r"shipped dataset files .* \(got 'mnist.npz'\)"):
        read_dataset_file("mnist.npz")


def test_a_root_is_read_as_is_without_hash_check(tmp_path, monkeypatch):
    (tmp_path / "a1a").write_text("+1 1:1 3:1\n-1 2:1\n+1 1:1\n-1 3:1\n")
    (tmp_path / "a1a.t").write_text("+1 1:1\n-1 2:1\n")
    ds = load_a1a(tmp_path, val_fraction=0.0, spins=False)
    assert ds.x_train.shape == (4, 123) and ds.x_test.shape == (2, 123)
    assert ds.y_train.tolist() == [1, 0, 1, 0]
    assert ds.info["files"] == [str(tmp_path / "a1a"), str(tmp_path / "a1a.t")]
    monkeypatch.setenv("QSGD_DATA_ROOT", str(tmp_path))
    assert get_dataset("a1a", val_fraction=0.0).x_test.shape == (2, 123)


# --------------------------------------------------------------------------- bad LIBSVM data


@pytest.mark.parametrize(
    ("text", "line", "token", "what"),
    [
        (
            "+1 3:1\n-1 3:1 zz:1\n",
            2,
            "zz:1",
            r"feature index must be an integer in \[1, n_features=123\]",
        ),
        ("+1 3:1\n\n3:1 5:1\n", 3, "3:1", "class label is missing"),
        ("+1 3:1\nfoo 2:1\n", 2, "foo", "class label must be an integer"),
        ("0.5 3:1\n", 1, "0.5", "class label must be an integer"),
        ("+1 3:1 200:1\n", 1, "200:1", r"\[1, n_features=123\]"),
        ("+1 0:1\n", 1, "0:1", r"\[1, n_features=123\]"),
        ("+1 3:1 bad\n", 1, "bad", "a feature must be written 'index:value'"),
        ("+1 3:1:1\n", 1, "3:1:1", "'index:value'"),
        ("+1 3:abc\n", 1, "3:abc", "feature value must be a finite number"),
        (
            "+1 3:1\n-1 4:1\n+1 3:nan\n",
            3,
            "3:nan",
            "feature value must be a finite number, not NaN",
        ),
        ("+1 3:-inf\n", 1, "3:-inf", "not NaN or inf"),
        ("nan 3:1\n", 1, "nan", "class label must be an integer"),
    ],
)
def test_libsvm_bad_line_names_file_line_and_token(tmp_path, text, line, token, what):
    f = tmp_path / "bad.svm"
    f.write_text(text)
    with pytest.raises(DataError) as info:
        load_libsvm(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"LIBSVM file '{f}', line {line}: ")
    assert msg.endswith(f"(got token {token!r})")
    assert re.search(what, msg), msg


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("\n\n", {}, "holds no samples"),
        ("+1 3:1\n", {"n_features": 0}, r"n_features must be a positive int \(got 0\)"),
        ("+1 4:1\n", {"n_features": 3}, r"line 1: .*\[1, n_features=3\] \(got token '4:1'\)"),
    ],
)
def test_libsvm_bad_input(tmp_path, text, kwargs, match):
    f = tmp_path / "bad.svm"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_libsvm(f, **kwargs)


def test_libsvm_gzip_and_not_utf8(tmp_path):
    f = tmp_path / "ok.svm.gz"
    f.write_bytes(gzip.compress(b"+1 1:1\n-1 2:1\n"))
    x, y = load_libsvm(f, n_features=2)
    assert x.tolist() == [[1, 0], [0, 1]] and y.tolist() == [1, -1]
    g = tmp_path / "bin.svm"
    g.write_bytes(b"+1 1:1\n\xff\xfe\n")
    with pytest.raises(
        DataError, match=r"bin.svm' must be UTF-8 text \(got byte 0xff at offset 7\)"
    ):
        load_libsvm(g)


def test_libsvm_small_file_and_empty_rows(tmp_path):
    f = tmp_path / "ok.svm"
    f.write_text("+1 1:1 4:0.5\n-1\n+1 2:2\n")
    x, y = load_libsvm(f, n_features=4)
    assert y.tolist() == [1, -1, 1]
    assert x.tolist() == [[1, 0, 0, 0.5], [0, 0, 0, 0], [0, 2, 0, 0]]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": "some"}, "features must be 'all'"),
        ({"features": [0, 123]}, r"column indices in \[0, 123\)"),
        ({"features": [1, 1]}, "distinct"),
        ({"features": []}, "features must be"),
        ({"val_fraction": 1.0}, r"val_fraction must be a float in \[0, 1\) \(got 1.0\)"),
        ({"seed": -1}, r"seed must be a non-negative int \(got -1\)"),
    ],
)
def test_a1a_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_a1a(**kwargs)


# --------------------------------------------------------------------------- Planetoid


def test_cora_matches_manifest(cora):
    assert (cora.num_nodes, cora.num_features, cora.num_classes) == (2708, 1433, 7)
    assert [int(m.sum()) for m in (cora.train_mask, cora.val_mask, cora.test_mask)] == [
        140,
        500,
        1000,
    ]
    assert cora.train_mask[:140].all() and not cora.train_mask[140:].any()
    assert not (cora.train_mask & cora.test_mask).any()
    assert not (cora.val_mask & cora.test_mask).any()
    assert cora.num_edges == 10556 and cora.edge_index.dtype == torch.int64
    assert torch.bincount(cora.y).tolist() == [351, 217, 418, 818, 426, 298, 180]
    assert torch.bincount(cora.y[cora.train_mask]).tolist() == [20] * 7
    assert int(cora.x.sum()) == 49216 and cora.x.dtype == torch.float32
    # undirected: every edge appears in both directions, no self loops
    ei = cora.edge_index
    fwd = set(map(tuple, ei.T.tolist()))
    assert fwd == {(b, a) for a, b in fwd} and all(a != b for a, b in fwd)


def test_citeseer_matches_manifest_sparse_equals_dense():
    dense = load_planetoid("citeseer")
    sparse = load_planetoid("citeseer", sparse=True)
    assert (dense.num_nodes, dense.num_features, dense.num_classes) == (3327, 3703, 6)
    assert [int(m.sum()) for m in (dense.train_mask, dense.val_mask, dense.test_mask)] == [
        120,
        500,
        1000,
    ]
    assert dense.num_edges == 9104
    assert int((~dense.label_valid).sum()) == 15
    assert not (~dense.label_valid & (dense.train_mask | dense.val_mask | dense.test_mask)).any()
    assert sparse.x.is_sparse and int(sparse.x._nnz()) == 105165
    assert torch.equal(sparse.x.to_dense(), dense.x)


def test_planetoid_spins_and_path(cora):
    spins = load_planetoid(SHIPPED_DIR / "cora.npz", spins=True)
    assert spins.name == "cora" and _is_spin(spins.x)
    assert torch.equal((spins.x + 1) / 2, cora.x)
    assert torch.equal(spins.edge_index, cora.edge_index)


def test_planetoid_errors(tmp_path):
    with pytest.raises(ConfigError, match="'pubmed' is not available offline.*ind.pubmed.allx"):
        load_planetoid("pubmed")
    with pytest.raises(ConfigError, match="'pubmed' is not available offline"):
        get_dataset("PubMed")
    with pytest.raises(ConfigError, match=r"one of \['cora', 'citeseer'\].*'reddit'"):
        load_planetoid("reddit")
    with pytest.raises(ConfigError, match="sparse=True and spins=True"):
        load_planetoid("cora", sparse=True, spins=True)
    with pytest.raises(FileNotFoundError, match=r"cora.npz'.*ship inside the package"):
        load_planetoid("cora", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"Planetoid file not found: '.*nope.npz'"):
        load_planetoid(tmp_path / "nope.npz")


def _tiny_planetoid(path: Path, **override) -> Path:
    """A 4-node, 3-feature graph in the shipped .npz schema, with ``override`` arrays."""
    arrays = {
        "x_indptr": np.array([0, 1, 2, 3, 4], dtype=np.int32),
        "x_indices": np.array([0, 1, 2, 0], dtype=np.uint16),
        "x_data": np.ones(4, dtype=np.uint8),
        "x_shape": np.array([4, 3]),
        "labels": np.array([0, 1, 0, 1]),
        "label_valid": np.ones(4, dtype=bool),
        "edge_index": np.array([[0, 1], [1, 0]], dtype=np.int32),
        "train_mask": np.array([1, 1, 0, 0], dtype=bool),
        "val_mask": np.array([0, 0, 1, 0], dtype=bool),
        "test_mask": np.array([0, 0, 0, 1], dtype=bool),
    }
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_planetoid_user_file_is_validated(tmp_path):
    good = load_planetoid(_tiny_planetoid(tmp_path / "tiny.npz"))
    assert (good.num_nodes, good.num_features, good.num_edges) == (4, 3, 2)
    nan = _tiny_planetoid(
        tmp_path / "nan.npz", x_data=np.array([1.0, 1.0, np.nan, 1.0], dtype=np.float32)
    )
    with pytest.raises(
        DataError,
        match=r"nan.npz': the features of node \(row\) 2 must be finite .*\(got .*nan.* at column 2\)",
    ):
        load_planetoid(nan)
    inf = _tiny_planetoid(tmp_path / "inf.npz", x_data=np.array([1.0, np.inf, 1.0, 1.0]))
    with pytest.raises(DataError, match=r"node \(row\) 1 must be finite"):
        load_planetoid(inf, sparse=True)
    with pytest.raises(DataError, match=r"missing \['labels'\]"):
        load_planetoid(_tiny_planetoid(tmp_path / "nolabels.npz", labels=None))
    with pytest.raises(DataError, match=r"must form a CSR matrix of shape \(4, 3\)"):
        load_planetoid(_tiny_planetoid(tmp_path / "csr.npz", x_indptr=np.array([0, 1, 2, 3])))
    with pytest.raises(DataError, match=r"x_indices must lie in \[0, 3\) \(got \[0, 7\]\)"):
        load_planetoid(_tiny_planetoid(tmp_path / "col.npz", x_indices=np.array([0, 1, 7, 0])))
    with pytest.raises(DataError, match=r"labels must hold integers \(got dtype float64\)"):
        load_planetoid(_tiny_planetoid(tmp_path / "fl.npz", labels=np.array([0, 1, np.nan, 1])))
    with pytest.raises(DataError, match=r"edge.npz': edge_index entries must lie in \[0, 4\)"):
        load_planetoid(_tiny_planetoid(tmp_path / "edge.npz", edge_index=np.array([[0], [9]])))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk.npz': must be a numpy .npz archive"):
        load_planetoid(junk)
    (tmp_path / "cora.npz").write_bytes(nan.read_bytes())
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "cora.npz"))):
        get_dataset("cora", root=tmp_path)


# --------------------------------------------------------------------------- karate


def test_karate_split_and_graph():
    g = load_karate(seed=0)
    assert (g.num_nodes, g.num_features, g.num_classes, g.num_edges) == (34, 34, 2, 156)
    assert int(g.y[0]) == 0 and int(g.y[33]) == 1 and int(g.y.sum()) == 17
    assert g.train_mask.nonzero().flatten().tolist() == [0, 33]
    assert int(g.val_mask.sum()) == 4 and int(g.test_mask.sum()) == 28
    assert torch.equal(g.train_mask ^ g.val_mask ^ g.test_mask, torch.ones(34, dtype=torch.bool))
    assert torch.bincount(g.y[g.val_mask]).tolist() == [2, 2]
    assert torch.equal(g.x, torch.eye(34))


def test_karate_seeded_extra_nodes_and_degree_features():
    a = load_karate(seed=3, extra_per_class=2, val_per_class=1)
    b = load_karate(seed=3, extra_per_class=2, val_per_class=1)
    c = load_karate(seed=4, extra_per_class=2, val_per_class=1)
    assert torch.equal(a.train_mask, b.train_mask) and torch.equal(a.val_mask, b.val_mask)
    assert not torch.equal(a.train_mask, c.train_mask)
    assert int(a.train_mask.sum()) == 6 and bool(a.train_mask[0]) and bool(a.train_mask[33])
    assert torch.bincount(a.y[a.train_mask]).tolist() == [3, 3]
    d = load_karate(features="degree", spins=True)
    assert _is_spin(d.x) and d.x.shape[0] == 34
    deg = torch.bincount(d.edge_index[0], minlength=34)
    assert d.x.shape[1] == len(torch.unique(deg))
    # nodes with equal degree have equal features, different degree different features
    same = deg[:, None] == deg[None, :]
    feats_equal = (d.x[:, None, :] == d.x[None, :, :]).all(-1)
    assert torch.equal(same, feats_equal)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": "pagerank"}, "features must be 'identity' or 'degree'"),
        ({"extra_per_class": -1}, r"extra_per_class must be a non-negative int \(got -1\)"),
        ({"val_per_class": 20}, r"at most 16 \(got 0 \+ 20\)"),
    ],
)
def test_karate_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_karate(**kwargs)


# --------------------------------------------------------------------------- scikit-learn


def test_breast_cancer_split_standardised_and_spins():
    ds = load_breast_cancer(seed=0)
    sizes = [t.shape[0] for t in (ds.x_train, ds.x_val, ds.x_test)]
    assert sum(sizes) == 569 and ds.num_features == 30 and ds.num_classes == 2
    assert torch.allclose(ds.x_train.mean(0), torch.zeros(30), atol=1e-5)
    assert torch.allclose(ds.x_train.std(0, unbiased=False), torch.ones(30), atol=1e-4)
    # stratified: test class ratio within one row of the overall 212/569
    assert abs(int((ds.y_test == 0).sum()) - 212 / 569 * sizes[2]) <= 1
    sp = load_breast_cancer(seed=0, spins=True)
    assert _is_spin(sp.x_train) and _is_spin(sp.x_test)
    assert torch.equal(sp.x_test, torch.where(ds.x_test >= 0, 1.0, -1.0))
    assert torch.equal(load_breast_cancer(seed=0).x_val, ds.x_val)
    assert not torch.equal(load_breast_cancer(seed=1).y_test, ds.y_test)


def test_digits_all_and_subset():
    ds = load_digits(seed=0)
    assert ds.num_classes == 10 and ds.num_features == 64
    assert sum(t.shape[0] for t in (ds.x_train, ds.x_val, ds.x_test)) == 1797
    sub = load_digits(seed=0, classes=(8, 3), spins=True)
    assert sub.num_classes == 2 and _is_spin(sub.x_train)
    assert sum(t.shape[0] for t in (sub.x_train, sub.x_val, sub.x_test)) == 183 + 174
    assert sub.info["classes"] == [8, 3]
    # digit 8 is class 0: count of class 0 over all splits is the 174 eights
    assert int(sum((t == 0).sum() for t in (sub.y_train, sub.y_val, sub.y_test))) == 174
    with pytest.raises(ValueError, match="at least two distinct digits"):
        load_digits(classes=(3,))
    with pytest.raises(ValueError, match="at least two distinct digits"):
        load_digits(classes=(3, 10))


# --------------------------------------------------------------------------- shapes, registry


def test_mismatched_shapes_are_rejected():
    x = np.zeros((10, 3))
    with pytest.raises(ValueError, match=r"y must have shape \(10,\).*\(got shape \(9,\)\)"):
        split_tabular(x, np.zeros(9, dtype=np.int64))
    with pytest.raises(ValueError, match="integer class labels"):
        split_tabular(x, np.zeros(10))
    t = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"y_val must have shape \(4,\)"):
        TabularDataset(
            "t",
            t,
            torch.zeros(4),
            t,
            torch.zeros(3),
            t,
            torch.zeros(4),
            num_features=2,
            num_classes=2,
        )
    with pytest.raises(
        ValueError, match=r"x_test must have num_features=2 columns \(got shape \(4, 3\)\)"
    ):
        TabularDataset(
            "t",
            t,
            torch.zeros(4),
            t,
            torch.zeros(4),
            torch.zeros(4, 3),
            torch.zeros(4),
            num_features=2,
            num_classes=2,
        )
    mask = torch.zeros(4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        GraphDataset("g", t, torch.zeros(5), torch.zeros(2, 0), mask, mask, mask, 2)
    with pytest.raises(ValueError, match=r"edge_index entries must lie in \[0, 4\)"):
        GraphDataset("g", t, torch.zeros(4), torch.tensor([[0], [4]]), mask, mask, mask, 2)
    with pytest.raises(ValueError, match="train_mask must be a bool tensor"):
        GraphDataset("g", t, torch.zeros(4), torch.zeros(2, 0), mask.float(), mask, mask, 2)


def test_nonfinite_arrays_are_refused_naming_dataset_and_row():
    x = np.zeros((10, 3))
    y = np.array([0, 1] * 5)
    x[7, 1] = np.inf
    with pytest.raises(
        DataError,
        match=r"dataset 'mine': x row 7 must hold finite numbers, not NaN or inf \(got inf\)",
    ):
        split_tabular(x, y, name="mine")
    t = torch.zeros(4, 2)
    bad = t.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(DataError, match=r"dataset 't': x_val row 3 .*\(got nan\)"):
        TabularDataset("t", t, torch.zeros(4), bad, torch.zeros(4), t, torch.zeros(4), 2, 2)
    mask = torch.zeros(4, dtype=torch.bool)
    ei = torch.zeros(2, 0, dtype=torch.int64)
    with pytest.raises(DataError, match=r"dataset 'g': x \(node features\) row 3"):
        GraphDataset("g", bad, torch.zeros(4), ei, mask, mask, mask, 2)
    sparse = torch.sparse_coo_tensor(
        torch.tensor([[0, 2], [1, 0]]), torch.tensor([1.0, -np.inf]), check_invariants=True
    )
    with pytest.raises(DataError, match=r"row 2 must hold finite numbers.*\(got -inf\)"):
        GraphDataset("g", sparse, torch.zeros(3), ei, mask[:3], mask[:3], mask[:3], 2)


def test_majority_rate():
    assert majority_rate([0, 1, 1, 1]) == 0.75
    assert majority_rate(torch.tensor([2, 2, 5])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        majority_rate([])


def test_registry():
    assert available_datasets() == sorted(
        ["a1a", "cora", "citeseer", "karate", "breast_cancer", "digits"]
    )
    with pytest.raises(ConfigError, match=r"unknown dataset 'mnist'; known datasets: \['a1a'"):
        get_dataset("mnist")
    ds = get_dataset("a1a", features=[0, 1], val_fraction=0.2, seed=5)
    assert isinstance(ds, TabularDataset) and ds.num_features == 2
    assert isinstance(get_dataset("citeseer"), GraphDataset)
    assert get_dataset("karate", seed=2).num_nodes == 34
    assert get_dataset("digits", classes=(0, 1)).num_classes == 2


# --------------------------------------------------------------------------- through the CLI

_BAD_DATA_CONFIG = """\
name = "bad-data"
[data]
name = "a1a"
root = "data"
options = {{ features = [5, 21, 35], val_fraction = 0.0 }}
[model]
arch = "mlp"
hidden = [4]
[optimizer]
name = "{optimizer}"
[annealer]
backend = "exact"
[train]
epochs = 1
batch_size = 4
[output]
run_dir = "run"
plots = false
"""

_GOOD_A1A = "+1 6:1 22:1\n-1 36:1\n+1 6:1\n-1 22:1\n"


@pytest.mark.parametrize(
    ("optimizer", "bad_file", "bad_text", "line", "token", "run_dir_exists"),
    [
        ("qpsbgd", "a1a", "+1 6:1\n-1 6:1 zz:1\n", 2, "zz:1", False),
        ("binaryconnect", "a1a", "+1 6:1\n-1 6:1 zz:1\n", 2, "zz:1", False),
        ("qpsbgd", "a1a.t", "+1 6:1\n-1 22:1\n-1 3:nan\n", 3, "3:nan", True),
        ("binaryconnect", "a1a.t", "+1 6:1\n-1 5:inf\n", 2, "5:inf", True),
    ],
)
def test_cli_train_refuses_bad_data_file(
    tmp_path, optimizer, bad_file, bad_text, line, token, run_dir_exists
):
    """`bnn train` on a malformed or NaN/inf a1a: exit 2, one line naming file, line, token;
    no run folder created, and an earlier run in the folder kept byte for byte."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a1a").write_text(_GOOD_A1A)
    (data / "a1a.t").write_text(_GOOD_A1A)
    (data / bad_file).write_text(bad_text)
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(_BAD_DATA_CONFIG.format(optimizer=optimizer))
    run = tmp_path / "run"
    previous = {}  # a finished earlier run that output.overwrite=true would replace
    if run_dir_exists:
        run.mkdir()
        previous = {CONFIG_NAME: b'name = "before"\n', METRICS_NAME: b"{}\n", SUMMARY_NAME: b"{}"}
        for fname, content in previous.items():
            (run / fname).write_bytes(content)
    env = {k: v for k, v in os.environ.items() if k != "QSGD_DATA_ROOT"}
    env.update(MPLBACKEND="Agg", CI="true")
    proc = subprocess.run(
        [sys.executable, "-m", "bnn", "train", str(cfg), "--set", "output.overwrite=true"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"bnn: error: LIBSVM file '{data / bad_file}', line {line}: ")
    assert lines[0].endswith(f"(got token {token!r})")
    if run_dir_exists:  # the bad data is refused before anything of the old run is touched
        assert {p.name: p.read_bytes() for p in run.iterdir()} == previous
    else:
        assert not run.exists()
