"""softmax_core.analysis against independent references on a really trained model and real MNIST.

The model is trained by the engine (TensorFlow) for two epochs; its test accuracy as TensorFlow
measured it, TensorFlow's own softmax and matmul, plain Python counting and the known MNIST test
label counts are the references, never analysis' own output.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from softmax_core.analysis import (confusion_matrix, evidence, logit_parts, misclassified, per_class_accuracy,
                                   predictions, row_normalised)
from softmax_core.config import TrainConfig
from softmax_core.data import Mnist
from softmax_core.model import predict_proba
from softmax_core.train import TrainResult, train

TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
"""How many of each digit MNIST's 10,000 test images hold (a published fact of the dataset)."""


@pytest.fixture(scope="module")
def trained(mnist: Mnist) -> TrainResult:
    result = train(TrainConfig(epochs=2), mnist)
    assert result.status == "completed"
    return result


@pytest.fixture(scope="module")
def scored(trained: TrainResult, mnist: Mnist):
    return predictions(predict_proba(trained.W, trained.b, mnist.images("test")), mnist.test_y)


def tf_probabilities(W: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    return tf.nn.softmax(tf.matmul(tf.constant(x), tf.constant(W)) + b).numpy()


def test_predictions_are_tensorflows_argmax_and_probability(trained: TrainResult, mnist: Mnist, scored) -> None:
    reference = tf_probabilities(trained.W, trained.b, mnist.images("test"))
    np.testing.assert_array_equal(scored.guesses, reference.argmax(axis=1))
    np.testing.assert_allclose(scored.confidence, reference.max(axis=1), atol=1e-5)
    np.testing.assert_array_equal(scored.labels, mnist.test_y)
    assert scored.accuracy == pytest.approx(trained.history[-1].test_accuracy, abs=1e-4)


def test_confusion_matrix_rows_are_the_test_label_counts(scored) -> None:
    matrix = confusion_matrix(scored.labels, scored.guesses)
    assert matrix.shape == (10, 10)
    assert matrix.sum(axis=1).tolist() == TEST_LABEL_COUNTS
    assert matrix.sum() == 10_000


def test_confusion_matrix_matches_counting_by_hand(scored) -> None:
    reference = [[0] * 10 for _ in range(10)]
    for label, guess in zip(scored.labels.tolist(), scored.guesses.tolist()):
        reference[label][guess] += 1
    assert confusion_matrix(scored.labels, scored.guesses).tolist() == reference


def test_confusion_matrix_trace_is_tensorflows_test_accuracy(trained: TrainResult, scored) -> None:
    matrix = confusion_matrix(scored.labels, scored.guesses)
    assert matrix.trace() / 10_000 == pytest.approx(trained.history[-1].test_accuracy, abs=1e-4)
    assert trained.history[-1].test_accuracy > 0.85  # two epochs of the defaults already reach ~0.91


def test_per_class_accuracy_and_row_shares(scored) -> None:
    matrix = confusion_matrix(scored.labels, scored.guesses)
    expected = [float(np.mean(scored.guesses[scored.labels == d] == d)) for d in range(10)]
    np.testing.assert_allclose(per_class_accuracy(matrix), expected)
    np.testing.assert_allclose(row_normalised(matrix).sum(axis=1), np.ones(10))


def test_row_normalised_leaves_an_empty_row_at_zero() -> None:
    matrix = confusion_matrix(np.array([0, 0, 2]), np.array([0, 1, 2]), classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
    np.testing.assert_allclose(row_normalised(matrix), [[0.5, 0.5, 0], [0, 0, 0], [0, 0, 1]])


def test_misclassified_lists_exactly_the_mistakes_most_confident_first(scored) -> None:
    matrix = confusion_matrix(scored.labels, scored.guesses)
    wrong = misclassified(scored)
    assert len(wrong) == matrix.sum() - matrix.trace()
    assert set(wrong.tolist()) == {i for i, (t, g) in enumerate(zip(scored.labels, scored.guesses)) if t != g}
    assert np.all(np.diff(scored.confidence[wrong]) <= 0)
    for true_digit, guessed_digit in ((4, 9), (7, 2), (3, 5)):
        cell = misclassified(scored, true_digit, guessed_digit)
        assert len(cell) == matrix[true_digit, guessed_digit]
        assert np.all(scored.labels[cell] == true_digit) and np.all(scored.guesses[cell] == guessed_digit)
    assert len(misclassified(scored, true_digit=5)) == TEST_LABEL_COUNTS[5] - matrix[5, 5]
    assert len(misclassified(scored, guessed_digit=4, true_digit=4)) == 0


def test_evidence_plus_bias_is_each_logit(trained: TrainResult, mnist: Mnist) -> None:
    for x in mnist.images("test")[:5]:
        logits = (tf.matmul(tf.constant(x[None]), tf.constant(trained.W)) + trained.b).numpy()[0]
        parts = logit_parts(x, trained.W, trained.b)
        np.testing.assert_allclose(parts.logits, logits, atol=1e-4)
        np.testing.assert_allclose(parts.bias, trained.b)
        for digit in range(10):
            votes = evidence(x, trained.W, digit)
            assert votes.shape == (28, 28)
            assert votes.sum() + trained.b[digit] == pytest.approx(logits[digit], abs=1e-4)
            assert np.all(votes.reshape(-1)[x == 0] == 0)  # no ink, no vote
        np.testing.assert_allclose(tf.nn.softmax(parts.logits).numpy(), tf_probabilities(trained.W, trained.b, x[None])[0],
                                   atol=1e-6)


def test_evidence_is_laid_out_like_the_image(trained: TrainResult, mnist: Mnist) -> None:
    image = mnist.images("test", 0).reshape(28, 28)
    row, col = np.unravel_index(image.argmax(), image.shape)
    digit = int(mnist.test_y[0])
    assert evidence(mnist.images("test", 0), trained.W, digit)[row, col] == pytest.approx(
        image[row, col] * trained.W[row * 28 + col, digit])


def test_predictions_refuse_mismatched_shapes(mnist: Mnist) -> None:
    with pytest.raises(ValueError, match="shape"):
        predictions(np.zeros((5, 10)), mnist.test_y[:4])
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros(3, int), np.zeros(4, int))
