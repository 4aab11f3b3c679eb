import numpy as np
import pytest
import torch

from worldmodel.frames import FrameSpec, check_frames, frames_to_tensor, preprocess_frame, tensor_to_frames


def test_uint8_float_uint8_round_trip_is_exact():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, 8, 12, 3), dtype=np.uint8)
    spec = FrameSpec(height=8, width=12)
    x = frames_to_tensor(frames, spec)
    assert x.dtype == torch.float32 and x.shape == (5, 3, 8, 12)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert np.array_equal(tensor_to_frames(x), frames)


def test_channels_last_has_same_values():
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    spec = FrameSpec(height=8, width=8)
    a = frames_to_tensor(frames, spec)
    b = frames_to_tensor(frames, spec, channels_last=True)
    assert b.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, b)


def test_non_square_resize_yields_height_by_width():
    frame = np.zeros((100, 50, 3), dtype=np.uint8)
    out = preprocess_frame(frame, FrameSpec(height=32, width=64))
    assert out.shape == (32, 64, 3)


def test_resize_keeps_vertical_layout():
    frame = np.zeros((96, 96, 3), dtype=np.uint8)
    frame[:48] = 255  # top half white
    out = preprocess_frame(frame, FrameSpec(height=32, width=16))
    assert out[:15].min() == 255 and out[17:].max() == 0


def test_crop_then_resize():
    frame = np.zeros((96, 96, 3), dtype=np.uint8)
    frame[84:] = 255  # a white dashboard strip at the bottom
    out = preprocess_frame(frame, FrameSpec(height=64, width=64, crop=(0, 0, 84, 96)))
    assert out.shape == (64, 64, 3) and out.max() == 0


def test_grayscale_keeps_channel_axis_and_luminance():
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    frame[..., 1] = 255  # pure green
    out = preprocess_frame(frame, FrameSpec(height=8, width=8, grayscale=True))
    assert out.shape == (8, 8, 1) and out.dtype == np.uint8
    assert abs(int(out[0, 0, 0]) - round(0.587 * 255)) <= 1


def test_grayscale_source_frame_accepted():
    out = preprocess_frame(np.zeros((10, 10), dtype=np.uint8), FrameSpec(height=8, width=8, grayscale=True))
    assert out.shape == (8, 8, 1)


def test_rgb_spec_rejects_gray_frames():
    with pytest.raises(ValueError, match="grayscale=True"):
        preprocess_frame(np.zeros((10, 10, 1), dtype=np.uint8), FrameSpec(height=8, width=8))


def test_wrong_dtype_rejected():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frame(np.zeros((8, 8, 3), dtype=np.float32), FrameSpec())


def test_crop_outside_frame_names_box_and_frame():
    with pytest.raises(ValueError, match=r"\(0, 0, 100, 96\) lies outside the 96x96"):
        preprocess_frame(np.zeros((96, 96, 3), dtype=np.uint8), FrameSpec(crop=(0, 0, 100, 96)))


@pytest.mark.parametrize("crop", [(10, 0, 5, 20), (-1, 0, 5, 5), (0, 0, 5)])
def test_bad_crop_rejected_at_construction(crop):
    with pytest.raises(ValueError, match="crop"):
        FrameSpec(crop=crop)


def test_check_frames_names_expected_and_actual():
    spec = FrameSpec(height=64, width=64)
    with pytest.raises(ValueError, match=r"expected frames of shape \(N, 64, 64, 3\).*got \(2, 96, 96, 3\)"):
        check_frames(np.zeros((2, 96, 96, 3), dtype=np.uint8), spec)
    with pytest.raises(ValueError, match="rank 3"):
        check_frames(np.zeros((64, 64, 3), dtype=np.uint8), spec)
    with pytest.raises(ValueError, match="float32"):
        frames_to_tensor(np.zeros((1, 64, 64, 3), dtype=np.float32), spec)
    with pytest.raises(ValueError, match=r"got \(1, 64, 64, 1\)"):
        frames_to_tensor(np.zeros((1, 64, 64, 1), dtype=np.uint8), spec)


def test_spec_dict_round_trip():
    spec = FrameSpec(height=48, width=80, crop=(1, 2, 30, 40), grayscale=True, interpolation="linear")
    assert FrameSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown FrameSpec fields"):
        FrameSpec.from_dict({"height": 64, "colour": "red"})
