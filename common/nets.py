"""Networks shared by the papers: the MLP autoencoder d-500-500-2000-e of DEC (DEKM, SAIP, R-DC).

Layers are created (and their initialisers drawn) in the same order as the modules built them by hand, so each
module's weights are bit for bit the ones its own builder gave: per layer, one fresh initialiser, created just
before its Dense layer (Keras draws an unseeded initialiser's seed when it is created).
"""
import keras
import numpy as np
from keras import layers

# Layer names: None lets Keras number the layer. "encoder"/"decoder" are formats with {i} (0-based) and
# {n} (1-based) for the hidden layers.
DEFAULT_NAMES = {"input": None, "flatten": None, "encoder": None, "code": "embedding", "decoder_input": None,
                 "decoder": None, "output": "reconstruction", "reshape": None}


def mlp_autoencoder(input_shape, embedding_dim=10, hidden=(500, 500, 2000), *, activation="relu",
                    initializer="glorot_uniform", names=None, flatten=True):
    """(encoder, decoder) Keras models: d-hidden-e and its mirror e-reversed(hidden)-d, ``activation`` on the
    hidden layers, a linear code and a linear output.

    input_shape  per sample; with ``flatten`` the encoder flattens it (d = its product) and the decoder reshapes
                 back to it; without, it must be (d,) and no Flatten/Reshape layer is built.
    initializer  every kernel's: a Keras name (each Dense resolves its own, e.g. "glorot_uniform", Keras's
                 default) or a zero-argument callable returning a new initializer (called once per layer).
    names        overrides of DEFAULT_NAMES (keys input, flatten, encoder, code, decoder_input, decoder, output,
                 reshape).
    """
    input_shape = tuple(int(s) for s in input_shape)
    if not flatten and len(input_shape) != 1:
        raise ValueError(f"flatten=False needs vectors (d,), got samples of shape {input_shape}")
    names = {**DEFAULT_NAMES, **(names or {})}
    unknown = set(names) - set(DEFAULT_NAMES)
    if unknown:
        raise ValueError(f"unknown layer name key(s) {sorted(unknown)}; valid: {sorted(DEFAULT_NAMES)}")

    def dense(units, name, act=None):
        init = initializer() if callable(initializer) else initializer
        return layers.Dense(units, activation=act, kernel_initializer=init, name=name)

    def hidden_name(key, i):
        return None if names[key] is None else names[key].format(i=i, n=i + 1)

    d = int(np.prod(input_shape))
    x_in = keras.Input(input_shape, name=names["input"])
    h = layers.Flatten(name=names["flatten"])(x_in) if flatten else x_in
    for i, units in enumerate(hidden):
        h = dense(units, hidden_name("encoder", i), activation)(h)
    encoder = keras.Model(x_in, dense(embedding_dim, names["code"])(h), name="encoder")
    z_in = keras.Input((embedding_dim,), name=names["decoder_input"])
    h = z_in
    for i, units in enumerate(reversed(hidden)):
        h = dense(units, hidden_name("decoder", i), activation)(h)
    out = dense(d, names["output"])(h)
    if flatten:
        out = layers.Reshape(input_shape, name=names["reshape"])(out)
    return encoder, keras.Model(z_in, out, name="decoder")
