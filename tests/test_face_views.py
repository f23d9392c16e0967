"""The served face model's test-time views (models.face_views): what each view shows the network."""

from __future__ import annotations

import pytest
import torch

from models.face_expression import load_fer_mini_xception
from models.face_views import SERVED_SCALES
from models.face_views import TestTimeViews as Views  # not "Test...": pytest would try to collect it


@pytest.fixture(scope="module")
def port() -> torch.nn.Module:
    return load_fer_mini_xception().eval()


def crops(n: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 256, (n, 64, 64), dtype=torch.uint8)


def test_one_unzoomed_view_is_the_network_alone(port) -> None:
    x = crops()
    one = Views(port, (1.0,), 64, mirror=False)
    assert torch.allclose(one.views(x)[0], x.to(torch.float32), atol=1e-3), "zoom 1 samples every pixel at its centre"
    assert torch.allclose(one(x).softmax(-1), port(x).softmax(-1), atol=1e-5)


def test_a_zoom_shows_the_centre_and_the_mirror_flips_it() -> None:
    x = torch.zeros(1, 64, 64, dtype=torch.uint8)
    x[:, 16:48, 16:48] = 200  # a bright square of half the side, in the middle
    plain, mirrored = Views(torch.nn.Identity(), (2.0,), 64).views(x)
    assert plain[0, 4:60, 4:60].min() > 190, "zoom 2: the centre half fills the view"
    x[:, 16:48, 16:24] = 0  # its left quarter dark
    plain, mirrored = Views(torch.nn.Identity(), (2.0,), 64).views(x)
    assert plain[0, 32, :8].max() < 10 and plain[0, 32, -8:-2].min() > 190
    assert torch.allclose(mirrored, plain.flip(-1), atol=1e-3)
    out = Views(torch.nn.Identity(), (0.5,), 64, mirror=False).views(x)
    assert out[0, 0, 0, 0] == 0 and out[0, 0, 32, 32] > 190, "zoom 0.5: the whole crop in the middle half, the border repeated"


def test_the_served_views_answer_a_face_and_its_mirror_alike(port) -> None:
    served = Views(port, SERVED_SCALES, 64).eval()
    x = crops(4)
    assert served.n_views == 2 * len(SERVED_SCALES)
    out = served(x)
    assert out.shape == (4, 7) and torch.allclose(out.exp().sum(-1), torch.ones(4), atol=1e-5), "log probabilities"
    assert torch.allclose(out, served(x.flip(-1)), atol=1e-4)
    assert not torch.allclose(out, port(x).log_softmax(-1), atol=1e-3), "the views change the answer"
    assert torch.allclose(served(x[:1]), out[:1], atol=1e-5), "each crop is judged on its own views, whatever the batch"


def test_scales_must_be_positive(port) -> None:
    with pytest.raises(ValueError, match="positive"):
        Views(port, (), 64)
    with pytest.raises(ValueError, match="positive"):
        Views(port, (1.0, -0.5), 64)
