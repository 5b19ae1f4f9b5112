"""Out-of-distribution scores: how unlike the training data one classified image is.

Higher always means less like the training data. The methods and their fitted arrays
come from the manifest (see models/calibrate.py, which also picks the method by
measurement).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge.inference.errors import ManifestError
from edge.inference.manifest import OodSpec

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def max_softmax_score(probs: F64) -> F64:
    """1 - the top calibrated probability, per row."""
    return np.asarray(1.0 - probs.max(axis=-1), dtype=np.float64)


def energy_score(logits: F64, temperature: float) -> F64:
    """Negative free energy -T * logsumexp(logits / T), per row (Liu et al. 2020)."""
    scaled = logits / temperature
    top = scaled.max(axis=-1, keepdims=True)
    lse = top[..., 0] + np.log(np.exp(scaled - top).sum(axis=-1))
    return np.asarray(-temperature * lse, dtype=np.float64)


class MahalanobisScorer:
    """Squared distance to the nearest class mean in a whitened projection of the embedding.

    ``projection`` (D x k) maps an L2-normalised embedding, minus ``centre``, into a space
    where the shared within-class covariance of the training embeddings is the identity.
    """

    def __init__(self, centre: F32, projection: F32, class_means: F32) -> None:
        if projection.ndim != 2 or centre.shape != (projection.shape[0],):
            raise ManifestError("ood arrays: centre and projection do not fit together")
        if class_means.ndim != 2 or class_means.shape[1] != projection.shape[1]:
            raise ManifestError("ood arrays: class_means do not fit the projection")
        # float64: a batch and a single image then agree to ~1e-12, whatever BLAS path runs.
        self.centre = centre.astype(np.float64)
        self.projection = projection.astype(np.float64)
        self.class_means = class_means.astype(np.float64)

    @property
    def embedding_size(self) -> int:
        """Length of the embedding this scorer expects."""
        return int(self.projection.shape[0])

    def __call__(self, embeddings: F32) -> F64:
        """Score each row of ``embeddings`` (N x D, L2-normalised)."""
        z = (embeddings.astype(np.float64) - self.centre) @ self.projection
        d = ((z[:, None, :] - self.class_means[None, :, :]) ** 2).sum(axis=-1)
        return np.asarray(d.min(axis=1), dtype=np.float64)


class ExposureScorer:
    """Mahalanobis distance plus a linear outlier-exposure term on the embedding.

    score = weights . embedding + maha_weight * (mahalanobis - maha_mean) / maha_std + bias,
    a logistic regression fitted to separate training leaves from generated non-leaf
    images (models/calibrate.py); higher means less like the training data.
    """

    def __init__(self, mahalanobis: MahalanobisScorer, linear: F32) -> None:
        if linear.shape != (mahalanobis.embedding_size + 4,):
            raise ManifestError("ood arrays: linear must hold D weights and 4 more values")
        self.mahalanobis = mahalanobis
        self.weights = linear[:-4].astype(np.float64)
        self.maha_weight, self.maha_mean, self.maha_std, self.bias = (float(v) for v in linear[-4:])

    @property
    def embedding_size(self) -> int:
        """Length of the embedding this scorer expects."""
        return self.mahalanobis.embedding_size

    def __call__(self, embeddings: F32) -> F64:
        """Score each row of ``embeddings`` (N x D, L2-normalised)."""
        maha = (self.mahalanobis(embeddings) - self.maha_mean) / self.maha_std
        linear = embeddings.astype(np.float64) @ self.weights
        return np.asarray(linear + self.maha_weight * maha + self.bias, dtype=np.float64)


class OodScorer:
    """Scores a batch from its calibrated probabilities, logits and embeddings."""

    def __init__(self, spec: OodSpec | None, temperature: float) -> None:
        self.spec = spec
        self.temperature = temperature
        self._embedding_scorer: MahalanobisScorer | ExposureScorer | None = None
        if spec is not None and spec.method in ("mahalanobis", "mahalanobis_exposure"):
            try:
                arrays = spec.arrays
                maha = MahalanobisScorer(
                    arrays["centre"], arrays["projection"], arrays["class_means"]
                )
                self._embedding_scorer = (
                    maha if spec.method == "mahalanobis" else ExposureScorer(maha, arrays["linear"])
                )
            except KeyError as exc:
                raise ManifestError(f"ood method {spec.method} needs array {exc}") from None

    @property
    def enabled(self) -> bool:
        """False for manifests without out-of-distribution settings."""
        return self.spec is not None

    @property
    def threshold(self) -> float:
        """Scores above this are out of distribution (infinite when disabled)."""
        return float("inf") if self.spec is None else self.spec.threshold

    def check_embedding_size(self, size: int) -> None:
        """Raise ManifestError if the model's embedding does not fit the fitted arrays."""
        scorer = self._embedding_scorer
        if scorer is not None and scorer.embedding_size != size:
            raise ManifestError(
                f"ood arrays expect a {scorer.embedding_size}-value embedding, "
                f"the model gives {size}"
            )

    def __call__(self, probs: F64, logits: F64, embeddings: F32) -> F64:
        """One score per row; zeros when disabled."""
        if self.spec is None:
            return np.zeros(len(probs), dtype=np.float64)
        if self.spec.method == "max_softmax":
            return max_softmax_score(probs)
        if self.spec.method == "energy":
            return energy_score(logits, self.temperature)
        assert self._embedding_scorer is not None
        return self._embedding_scorer(embeddings)
