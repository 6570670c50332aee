"""Image-translation metrics: pixel errors, PSNR, and FID / KID from Inception-v3 pool features.

FID and KID mean something only with the ImageNet-trained Inception-v3 that defined them. Its weights come from a
local file (these machines cannot download them); without one, they are not computed, rather than computed from
other features under the same names.
"""
import warnings

import numpy as np

INCEPTION_SIZE = 299


def mae(x, y):
    """Mean absolute error of two uint8 images, on the [0, 1] intensity scale."""
    return float(np.mean(np.abs(x.astype(np.float64) - y.astype(np.float64))) / 255.0)


def best_colour_map(sources, targets):
    """The affine per-pixel colour map (3x3 and a bias) that fits `targets` from `sources` best in least squares,
    over all their pixels (uint8 images, pairwise of one size), applied to each source: uint8 images. What any
    model that sees a pixel's colour alone can reach at most (in squared error), so a task it solves does not
    need spatial learning."""
    def design(image):
        pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
        return np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1)

    x = np.concatenate([design(image) for image in sources])
    y = np.concatenate([image.reshape(-1, 3).astype(np.float64) / 255.0 for image in targets])
    weights, *_ = np.linalg.lstsq(x, y, rcond=None)
    return [np.clip(np.round(design(image) @ weights * 255.0), 0, 255).astype(np.uint8).reshape(image.shape)
            for image in sources]


def psnr(x, y):
    mse = np.mean(((x.astype(np.float64) - y.astype(np.float64)) / 255.0) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def fid(features_x, features_y):
    """Fréchet distance between Gaussians fitted to two feature sets (rows are examples).

    tr(sqrt(S_x S_y)) is the sum of the square roots of the eigenvalues of S_x S_y, which are real and non-negative
    for covariance matrices; tiny negative or imaginary parts are round-off.
    """
    x, y = np.asarray(features_x, np.float64), np.asarray(features_y, np.float64)
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    eigenvalues = np.linalg.eigvals(cov_x @ cov_y)
    trace_sqrt = np.sqrt(np.clip(eigenvalues.real, 0, None)).sum()
    return float(max(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x) + np.trace(cov_y) - 2.0 * trace_sqrt, 0.0))


def kid(features_x, features_y, subsets=100, subset_size=1000, seed=0):
    """Kernel Inception Distance: the unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged over random subsets
    of min(subset_size, n) examples per set (all of them once when both sets are that small)."""
    x, y = np.asarray(features_x, np.float64), np.asarray(features_y, np.float64)
    m = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    whole = m == len(x) == len(y)
    estimates = []
    for _ in range(1 if whole else subsets):
        a = x if whole else x[rng.choice(len(x), m, replace=False)]
        b = y if whole else y[rng.choice(len(y), m, replace=False)]
        estimates.append(mmd2_unbiased(a, b))
    return float(np.mean(estimates))


def mmd2_unbiased(a, b):
    d = a.shape[1]
    k_aa, k_bb, k_ab = ((p @ q.T / d + 1.0) ** 3 for p, q in ((a, a), (b, b), (a, b)))
    m = len(a)
    off_diagonal = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return off_diagonal - 2.0 * k_ab.mean()


class InceptionFeatures:
    """2048-d pool features of Inception-v3 with the weights in `weights_path` (a Keras .weights.h5 file of
    keras.applications.InceptionV3(include_top=False, pooling="avg"))."""

    def __init__(self, weights_path):
        import keras
        import tensorflow as tf

        from preprocessing.flags import UsageError

        flag = f"--inception_weights {weights_path}"
        if not tf.io.gfile.exists(weights_path):
            raise UsageError(f"{flag}: no such file")
        self.model = keras.applications.InceptionV3(include_top=False, pooling="avg", weights=None,
                                                    input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
        try:
            with warnings.catch_warnings():
                # Keras warns, and goes on, about weights it could not place
                warnings.simplefilter("error", UserWarning)
                self.model.load_weights(weights_path)
        except Exception as err:  # not HDF5, another model's weights, a file cut short: all mean the same here
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UsageError(f"{flag}: not the weights of Keras's InceptionV3(include_top=False, pooling='avg') "
                             f"({reason}); save them with model.save_weights('inception_v3.weights.h5') on a "
                             "machine that can download them") from None

    def __call__(self, images, batch_size=16):
        """uint8 images of any sizes -> [N, 2048] float64."""
        import tensorflow as tf
        from keras.applications import inception_v3

        features = []
        for start in range(0, len(images), batch_size):
            batch = [tf.image.resize(tf.constant(image, tf.float32), [INCEPTION_SIZE] * 2, method="bilinear")
                     for image in images[start:start + batch_size]]
            features.append(self.model(inception_v3.preprocess_input(tf.stack(batch)), training=False).numpy())
        return np.concatenate(features).astype(np.float64)
