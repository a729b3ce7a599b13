"""DECS's autoencoder on 28x28 inputs follows the authors' CAE (github.com/ChengZhanwen/DECS, DECS/DECS.py): when H is
not a multiple of 8, conv4 and the first transposed convolution (deconv3) use 'valid' padding, so 28 -> 14 -> 7 -> 3
(pooling) -> 1 (conv4) and the decoder 3 -> 7 (valid ConvT) -> 14 -> 28; 16x16 inputs keep 'same' everywhere."""
import pytest

from papers import decs


def _shapes(model, kind):
    return [tuple(l.output.shape[1:]) for l in model.layers if type(l).__name__ == kind]


@pytest.mark.parametrize("size, conv4, first_convt", [(28, (1, 1, 256), (7, 7, 128)), (16, (2, 2, 256), (4, 4, 128))])
def test_padding_follows_the_authors_cae(size, conv4, first_convt):
    enc, dec = decs.build_autoencoder((size, size, 1))
    convs, convts = _shapes(enc, "Conv2D"), _shapes(dec, "Conv2DTranspose")
    assert convs[-1] == conv4 and convts[0] == first_convt
    assert convts[-1] == (size, size, 1) and tuple(enc.output.shape[1:]) == (10,)
    # 'same' at conv4 for 28x28 would give a 3x3x256 map, a 2304-wide flatten and another Dense size
    assert enc.get_layer("embedding").kernel.shape == (conv4[0] * conv4[1] * 256, 10)
    # the authors' layer sizes: conv 320 + 18,496 + 73,856 + 295,168, BN 4 x (32 + 64 + 128 + 256)
    assert enc.count_params() == 320 + 18496 + 73856 + 295168 + 4 * (32 + 64 + 128 + 256) \
        + conv4[0] * conv4[1] * 256 * 10 + 10
