"""LBVCNN: fixed local binary volume filters that never train, their response, and the grey per-frame part."""

from __future__ import annotations

import pytest
import torch

from classemo.models import create_model
from classemo.models.lbvcnn import LBVCNN, LocalBinaryVolume, fill_padding

SIZE, NUM_FRAMES = 32, 4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _model(**kwargs: object) -> LBVCNN:
    return create_model("lbvcnn_tiny", num_classes=4, image_size=SIZE, num_frames=NUM_FRAMES, **kwargs)


def test_binary_filters_compare_the_centre_with_each_of_its_26_neighbours() -> None:
    filters = LocalBinaryVolume(8).filters  # (26, 1, 3, 3, 3)
    assert filters.shape == (26, 1, 3, 3, 3)
    flat = filters.flatten(1)
    assert torch.all(flat[:, 13] == -1), "the centre voxel (1, 1, 1) is the -1 of every filter"
    assert torch.all((flat == 1).sum(1) == 1) and torch.all((flat != 0).sum(1) == 2)
    assert len({int(row.argmax()) for row in flat}) == 26, "each filter picks a different neighbour"


def test_binary_filters_are_buffers_that_an_optimiser_step_does_not_change() -> None:
    model = _model().train()
    lbv = model.lbv
    assert "lbv.filters" in dict(model.named_buffers()) and "lbv.filters" in model.state_dict()
    assert all(p is not lbv.filters for p in model.parameters())
    filters, combine, slope = lbv.filters.clone(), lbv.combine.weight.detach().clone(), lbv.log_slope.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    frames = torch.randn(2, NUM_FRAMES, 3, SIZE, SIZE)
    model(frames)["logits"].logsumexp(-1).sum().backward()
    optimizer.step()
    torch.testing.assert_close(lbv.filters, filters, rtol=0, atol=0)
    assert not torch.equal(lbv.combine.weight, combine), "the 1x1x1 combination trains"
    assert not torch.equal(lbv.log_slope, slope), "the threshold's slope trains"


def test_lbv_response_of_a_constant_volume_is_the_same_everywhere() -> None:
    lbv = LocalBinaryVolume(6)
    constant = torch.full((2, 1, 4, 9, 9), 0.7)
    maps = lbv.binary_maps(constant)
    torch.testing.assert_close(maps, torch.full_like(maps, 0.5))  # sigmoid(0): no neighbour differs, borders too
    out = lbv(constant)  # (2, 6, 4, 9, 9)
    torch.testing.assert_close(out, out[..., :1, :1, :1].expand_as(out))
    varied = lbv(torch.randn(2, 1, 4, 9, 9))
    assert varied.flatten(2).std(-1).min() > 1e-3, "a textured volume gives a position-dependent response"


def test_binary_map_is_a_sigmoid_of_neighbour_minus_centre() -> None:
    lbv = LocalBinaryVolume(4, slope=3.0)
    volume = torch.randn(1, 1, 3, 3, 3)
    maps = lbv.binary_maps(volume)  # (1, 26, 3, 3, 3)
    index = int(lbv.filters[:, 0].flatten(1).argmax(1).eq(2 * 9 + 1 * 3 + 2).nonzero())  # neighbour (t+1, y, x+1)
    expected = torch.sigmoid(3.0 * (volume[0, 0, 2, 1, 2] - volume[0, 0, 1, 1, 1]))
    torch.testing.assert_close(maps[0, index, 1, 1, 1], expected)


def test_spatial_part_is_the_flattened_grey_frame() -> None:
    model = _model(grey_stride=1)
    images = torch.randn(3, 3, SIZE, SIZE)
    grey = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    torch.testing.assert_close(model.forward_spatial(images)["features"], grey.flatten(1))
    assert _model().embed_dim == (SIZE // 2) ** 2, "the tiny preset halves the grey frame"


def test_padded_steps_become_the_last_real_step() -> None:
    x = torch.randn(2, 3, 4, 2, 2)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    filled = fill_padding(x, mask)
    torch.testing.assert_close(filled[0, :, 2:], x[0, :, 1:2].expand(-1, 2, -1, -1))
    torch.testing.assert_close(filled[0, :, :2], x[0, :, :2])
    torch.testing.assert_close(filled[1], x[1])


def test_each_frames_output_looks_across_time() -> None:
    model = _model().eval()
    frames = torch.randn(1, NUM_FRAMES, 3, SIZE, SIZE)
    changed = frames.clone()
    changed[:, 1] += torch.randn(3, SIZE, SIZE)
    with torch.no_grad():
        a, b = model(frames)["frame_logits"], model(changed)["frame_logits"]
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-5, "frame 0's output sees frame 1 through the 3D convolutions"


def test_max_pooling_ignores_padding() -> None:
    model = _model(temporal_pool="max").train()
    frames = torch.randn(2, NUM_FRAMES, 3, SIZE, SIZE)
    mask = torch.tensor([[True, True, False, False], [True, True, True, False]])
    noisy = frames.clone()
    noisy[~mask] = torch.randn_like(noisy[~mask]) * 10
    torch.testing.assert_close(model(noisy, mask)["logits"], model(frames, mask)["logits"])
    with pytest.raises(ValueError, match="temporal_pool"):
        _model(temporal_pool="median")
