import numpy as np
import pytest
import torch

from detect.models import architecture_names, create_detector, packaged_efficientnet_lite0_state
from swapscope.errors import InputError


def _imagenet_top(model, image, data):
    import cv2

    x = cv2.resize(image, (data.input_size, data.input_size), interpolation=cv2.INTER_AREA)
    x = (x.astype(np.float32) / 255 - data.mean) / data.std
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(2, 0, 1)).float()[None]).softmax(-1)[0]


def test_packaged_efficientnet_lite0_weights_predict_imagenet_classes():
    """The package's weights are mapped onto timm's layout correctly: a cat is a cat."""
    import timm
    from skimage import data

    model = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(packaged_efficientnet_lite0_state())
    _, cfg = create_detector("efficientnet_lite0", pretrained=False)
    cat = _imagenet_top(model, data.chelsea(), cfg)
    assert int(cat.argmax()) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    assert float(cat[[281, 282, 285]].sum()) > 0.8
    coffee = _imagenet_top(model, data.coffee(), cfg)
    assert int(coffee.argmax()) == 967 and float(coffee[967]) > 0.5  # espresso


@pytest.mark.parametrize("arch", architecture_names())
def test_every_registered_architecture_has_a_two_way_head(arch):
    model, cfg = create_detector(arch, pretrained=False)
    x = torch.zeros(2, 3, cfg.input_size, cfg.input_size)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 2)
    assert len(cfg.mean) == 3 and len(cfg.std) == 3


def test_default_detector_starts_from_imagenet_with_a_fresh_head():
    """Its backbone is the packaged ImageNet network: given the ImageNet classifier back, it
    sees the cat; only the two-way head is new."""
    import timm
    from skimage import data

    model, cfg = create_detector()
    assert cfg.input_size == 224
    assert model.get_classifier().out_features == 2
    imagenet = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    imagenet.load_state_dict(packaged_efficientnet_lite0_state())
    model.reset_classifier(1000)
    model.get_classifier().load_state_dict(imagenet.get_classifier().state_dict())
    cat = _imagenet_top(model.eval(), data.chelsea(), cfg)
    assert int(cat.argmax()) in (281, 282, 285) and float(cat[[281, 282, 285]].sum()) > 0.8
    fresh, _ = create_detector(pretrained=False)  # without ImageNet: not a cat
    fresh.reset_classifier(1000)
    fresh.get_classifier().load_state_dict(imagenet.get_classifier().state_dict())
    assert float(_imagenet_top(fresh.eval(), data.chelsea(), cfg)[[281, 282, 285]].sum()) < 0.5


def test_hub_weights_offline_fail_with_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="offline") as info:
        create_detector("resnet50", pretrained=True)
    assert "\n" not in str(info.value)


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(InputError, match="choose from"):
        create_detector("no_such_net")
