"""Every method's ``paper`` profile feeds its backbone the normalisation of that backbone's own
weights and names the weights the paper used; the run record says which."""

from __future__ import annotations

import pytest

from dermbench.models.build import build_model
from dermbench.plugins import load_plugins
from dermbench.plugins.contract import ModelContext
from dermbench.stages.device import IMAGENET_MEAN, describe_input_stats

HALF = [0.5, 0.5, 0.5]
# method -> (the weights the paper's code used, the mean it was fed)
EXPECTED = {
    "lmf": ("tf_efficientnetv2_s.in1k", HALF),  # timm's TF port: mean = std = 0.5
    "recall_resnet": ("resnet50.tv_in1k", list(IMAGENET_MEAN)),  # torchvision's ResNet-50
    "zoo_resnet50": ("resnet50.tv_in1k", list(IMAGENET_MEAN)),
    "zoo_vgg16": ("vgg16.tv_in1k", list(IMAGENET_MEAN)),
    "zoo_inception_v3": ("inception_v3.tv_in1k", HALF),  # torchvision's Inception-v3 takes [-1, 1]
    "medmnist_resnet18": (None, HALF),  # Normalize(mean=.5, std=.5), no pretrained weights
}


@pytest.fixture(scope="module")
def plugins():
    return load_plugins(autoload=True)


@pytest.mark.parametrize("method", sorted(EXPECTED))
def test_the_paper_profile_resolves_to_the_weights_and_normalisation_of_the_paper(plugins, method):
    profile = plugins.registries.methods.get(method).profiles["paper"]
    tag, mean = EXPECTED[method]
    ctx = ModelContext(num_classes=3, image_size=int(profile.get("image_size", 64)), init="random")
    model_options = {
        k.split(".", 1)[1]: v for k, v in (profile.get("options") or {}).items() if k.startswith("model.")
    }
    model = build_model(profile["model"], ctx, plugins.registries.models, model_options)
    described = describe_input_stats(model)
    assert described["mean"] == pytest.approx(mean)
    assert described.get("pretrained_cfg") == tag
