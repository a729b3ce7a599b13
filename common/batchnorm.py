"""BatchNormalization whose training step runs TensorFlow's fused kernel (issue 21, benchmarks/SPEED.md).

Keras 3 computes batch normalisation unfused on TensorFlow (``tf.nn.moments`` + ``tf.nn.batch_normalization`` and
their autodiff gradients); ``FusedBatchNormV3`` does it in one pass forward and one backward (1.15x on the whole
DECS pre-training step). Same maths (Ioffe & Szegedy 2015, Alg. 1), another summation order: not bit-identical.

``BatchNormalization`` here is ``keras.layers.BatchNormalization`` (same constructor, variables in the same order,
same config, so weights load both ways) with one change: in training, on the TensorFlow backend, for float32 NHWC
rank-4 or rank-2 inputs (rank 2 as N x 1 x 1 x C) without a mask, renorm or synchronisation, it calls the fused
kernel:
    y = (x - mean_B) / sqrt(var_B + eps) * gamma + beta,   var_B the biased batch variance;
    moving = moving * momentum + batch * (1 - momentum)     (Keras's update, with Keras's biased var_B).
The kernel returns the Bessel-corrected variance n/(n-1) var_B; it is converted back. Everything else (inference,
masks, other axes or dtypes, JAX/torch) is Keras's own ``call``, so inference is bit-identical to Keras.
"""
import keras
from keras import backend, ops

# rank -> the channel axes (NHWC, or features of a rank-2 input) the fused path accepts
_FUSED_AXES = {2: (-1, 1), 4: (-1, 3)}


@keras.saving.register_keras_serializable(package="common")
class BatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization with TensorFlow's fused kernel in training (module docstring)."""

    def _fused(self, inputs, training, mask):
        """Whether this call takes the fused path."""
        rank = len(inputs.shape)
        return bool(
            training and self.trainable and mask is None and not self.renorm and not self.synchronized
            and backend.backend() == "tensorflow" and rank in _FUSED_AXES and self.axis in _FUSED_AXES[rank]
            and backend.standardize_dtype(inputs.dtype) == "float32" and self.compute_dtype == "float32"
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = self.moving_mean.shape[0]
        x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, channels])
        gamma = ops.cast(self.gamma, "float32") if self.scale else tf.ones([channels], "float32")
        beta = ops.cast(self.beta, "float32") if self.center else tf.zeros([channels], "float32")
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon,
                                                             data_format="NHWC", is_training=True)
        # the kernel's variance is n/(n-1) var_B (n values per channel; n=1 left as is, var_B = 0 then)
        n = tf.cast(tf.size(x, out_type=tf.int64) // channels, "float32")
        variance = variance * ((n - 1.0) / tf.maximum(n, 1.0))
        moving_mean = ops.cast(self.moving_mean, "float32")
        moving_variance = ops.cast(self.moving_variance, "float32")
        self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return y if len(inputs.shape) == 4 else tf.reshape(y, tf.shape(inputs))
