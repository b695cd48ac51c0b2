"""scikit-learn contract of the estimators: estimator checks, GridSearchCV, cross_val_score, pickling."""

import pickle

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from qkernels.datasets import load_dataset
from qkernels.svm import QuantumKernelClassifier, QuantumKernelRidge

# Every applicable check runs. Skipped by scikit-learn itself (SkipTest, reported as skipped):
# check_array_api_input (needs SCIPY_ARRAY_API and an array-API namespace; the kernels run in
# torch float64 on numpy input) and check_*_data_not_an_array (needs pandas, not a dependency).


@parametrize_with_checks([QuantumKernelClassifier(n_layers=1), QuantumKernelRidge(n_layers=1)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


DS = load_dataset("moons", n_train=24, n_test=24, seed=0)


def test_fit_predict_score_and_params_roundtrip():
    clf = QuantumKernelClassifier(n_wires=2, n_layers=1, bandwidth=1.5, C=2.0)
    assert clf.get_params()["C"] == 2.0
    clf.set_params(C=3.0)
    assert clf.C == 3.0
    clf.fit(DS.X_train, DS.y_train)
    assert clf.score(DS.X_test, DS.y_test) > 0.6
    assert clf.decision_function(DS.X_test).shape == (24,)
    assert clf.kernel_.n_wires == 2


def test_grid_search_and_cross_val_score():
    clf = QuantumKernelClassifier(n_layers=1)
    grid = GridSearchCV(clf, {"bandwidth": [0.2, 1.5], "C": [1.0]}, cv=3).fit(
        DS.X_train, DS.y_train
    )
    assert grid.best_params_["bandwidth"] in (0.2, 1.5)
    scores = cross_val_score(clf, DS.X_train, DS.y_train, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


def test_training_inside_the_classifier_is_seeded_and_changes_the_kernel():
    # 2 layers: with one layer the trailing trainable unitary cancels in the fidelity (zero gradient)
    a = QuantumKernelClassifier(n_wires=3, n_layers=2, train_steps=3, batch_size=4, seed=1).fit(
        DS.X_train, DS.y_train
    )
    b = QuantumKernelClassifier(n_wires=3, n_layers=2, train_steps=3, batch_size=4, seed=1).fit(
        DS.X_train, DS.y_train
    )
    u = QuantumKernelClassifier(n_wires=3, n_layers=2, seed=1).fit(DS.X_train, DS.y_train)
    np.testing.assert_array_equal(
        a.kernel_.params.detach().numpy(), b.kernel_.params.detach().numpy()
    )
    assert not np.allclose(a.kernel_.params.detach().numpy(), u.kernel_.params.detach().numpy())
    assert len(a.training_.alignment) == 3 and u.training_ is None


def test_pickled_classifier_predicts_the_same():
    clf = QuantumKernelClassifier(n_layers=1).fit(DS.X_train, DS.y_train)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict(DS.X_test), clf.predict(DS.X_test))


def test_bad_inputs():
    X, y = DS.X_train, DS.y_train
    with pytest.raises(ValueError, match=r"expected at most 1, got 2"):
        QuantumKernelClassifier(n_wires=1).fit(X, y)
    with pytest.raises(ValueError, match=r"needs binary labels .* \(got 3 classes\)"):
        QuantumKernelClassifier(train_steps=1).fit(X, np.arange(len(y)) % 3)
    with pytest.raises(ValueError, match=r"NaN"):
        QuantumKernelClassifier().fit(np.where(np.eye(len(y), 2) > 0, np.nan, X), y)
    with pytest.raises(
        KeyError, match=r"unknown ansatz 'qaoa'; known ansätze: angle, hardware_efficient"
    ):
        QuantumKernelClassifier(ansatz="qaoa").fit(X, y)
    clf = QuantumKernelClassifier(n_layers=1).fit(X, y)
    with pytest.raises(
        ValueError, match=r"X has 3 features, but QuantumKernelClassifier is expecting 2"
    ):
        clf.predict(np.ones((2, 3)))


def test_ridge_regression_fits_a_smooth_function():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(30, 1))
    y = np.sin(2 * X[:, 0])
    reg = QuantumKernelRidge(ansatz="angle", n_layers=1, bandwidth=2.0, alpha=1e-3).fit(X, y)
    assert reg.score(X, y) > 0.95
