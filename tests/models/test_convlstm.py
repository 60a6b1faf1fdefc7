"""Enhanced ConvLSTM: a state carried through padded steps, the temporal skip and spatial skip, the temporal gate."""

from __future__ import annotations

import pytest
import torch

from classemo.models import create_model
from classemo.models.convlstm import EnhancedConvLSTM, EnhancedConvLSTMNet

SIZE, NUM_FRAMES = 32, 4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _model(**kwargs: object) -> EnhancedConvLSTMNet:
    return create_model("convlstm_tiny", **dict(dict(num_classes=4, image_size=SIZE, num_frames=NUM_FRAMES), **kwargs))


def _flat(states: list) -> list[torch.Tensor]:
    return [t for h, c, history in states for t in (h, c, *history)]


def test_a_padded_step_leaves_every_state_unchanged() -> None:
    stack = EnhancedConvLSTM(6, (5, 4), skip_steps=2)
    x = torch.randn(2, 6, 4, 4)
    states = stack.initial_state(x)
    for _ in range(3):  # some real history first, so that the states are not all zeros
        _, states = stack.step(torch.randn(2, 6, 4, 4), states, torch.tensor([True, True]))
    _, after = stack.step(x, states, torch.tensor([False, True]))  # clip 0 padded, clip 1 real
    for before_t, after_t in zip(_flat(states), _flat(after)):
        torch.testing.assert_close(after_t[0], before_t[0], rtol=0, atol=0)
    assert any(not torch.equal(a[1], b[1]) for a, b in zip(_flat(after), _flat(states))), "a real step moves on"


def test_temporal_skip_reads_the_hidden_state_k_real_steps_back() -> None:
    stack = EnhancedConvLSTM(3, (4,), skip_steps=2)
    x = torch.randn(1, 3, 2, 2)
    states, hidden = stack.initial_state(x), []
    for real in (True, False, True, True):
        _, states = stack.step(torch.randn(1, 3, 2, 2), states, torch.tensor([real]))
        if real:
            hidden.append(states[0][0])
    history = states[0][2]  # [h_{t-1}, h_{t-2}] of the next step, counting real steps only
    torch.testing.assert_close(history[0], hidden[-1])
    torch.testing.assert_close(history[1], hidden[-2])


def test_step_output_carries_the_cnn_map_beside_the_top_hidden_state() -> None:
    stack = EnhancedConvLSTM(6, (5, 4))
    x = torch.randn(2, 6, 3, 3)
    out, states = stack.step(x, stack.initial_state(x), torch.tensor([True, True]))
    assert out.shape == (2, 4 + 6, 3, 3) and stack.out_channels == 10
    torch.testing.assert_close(out[:, :4], states[-1][0])
    torch.testing.assert_close(out[:, 4:], x)


@pytest.mark.parametrize("train", [False, True])
def test_temporal_gate_weights_sum_to_one_over_real_frames_and_pool_the_clip(train: bool) -> None:
    model = _model().train(train)
    frames = torch.randn(3, NUM_FRAMES, 3, SIZE, SIZE)
    mask = torch.tensor([[True, False, False, False], [True, True, True, False], [True] * 4])
    out = model(frames, mask)
    weights = out["frame_weights"]  # (B, T)
    assert weights.shape == mask.shape and torch.all(weights[~mask] == 0) and torch.all(weights[mask] > 0)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert weights[2].std() > 0, "the gate scores steps differently"
    # The heads are linear and dropout is off, so the clip logits are the gate-weighted frame logits.
    torch.testing.assert_close(out["logits"], torch.einsum("bt,btc->bc", weights, out["frame_logits"]))


def test_forget_gate_starts_open() -> None:
    cell = _model().recurrent.cells[0]
    hidden = cell.hidden_channels
    assert torch.all(cell.gates.bias[hidden:2 * hidden] == 1) and torch.all(cell.gates.bias[:hidden] == 0)


def test_feature_width_follows_the_frame_cnn_map() -> None:
    model = _model()
    assert model.grid == SIZE // 8 and model.embed_dim == 64 * (SIZE // 8) ** 2
    images = torch.randn(2, 3, SIZE, SIZE)
    assert model.forward_spatial(images)["features"].shape == (2, model.embed_dim)
    odd = _model(image_size=36)  # 36 -> 18 -> 9 -> 5: strided convs round up
    assert odd.forward_spatial(torch.randn(1, 3, 36, 36))["features"].shape == (1, odd.embed_dim)
