"""The paper's network (section 3): shapes, wiring, initialisation, ablations, two devices."""

from pathlib import Path

import pytest
import torch
from torch import nn

from alexnet import AlexNet, LocalResponseNorm, TwoDeviceAlexNet, build_model
from alexnet.model import one_to_two_device_state, two_to_one_device_state

PAPER_MAPS = {"conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13),
              "conv4": (384, 13, 13), "conv5": (256, 13, 13), "pool5": (256, 6, 6)}


@pytest.fixture(scope="module")
def paper_net():
    torch.manual_seed(0)
    return AlexNet().eval()


def feature_maps(net, x):
    maps, h = {}, x
    for name, module in net.features.named_children():
        h = module(h)
        maps[name] = h
    return maps


def test_the_network_has_exactly_60965224_parameters(paper_net):
    assert sum(p.numel() for p in paper_net.parameters()) == 60_965_224


def test_every_feature_map_has_the_papers_shape(paper_net):
    with torch.no_grad():
        maps = feature_maps(paper_net, torch.zeros(1, 3, 227, 227))
        logits = paper_net(torch.zeros(2, 3, 227, 227))
    for name, shape in PAPER_MAPS.items():
        assert tuple(maps[name].shape[1:]) == shape, name
    assert logits.shape == (2, 1000)


def test_kernel_depths_are_3_48_256_192_192(paper_net):
    depths = [m.weight.shape[1] for m in paper_net.features if isinstance(m, nn.Conv2d)]
    assert depths == [3, 48, 256, 192, 192]
    kernels = [(m.out_channels, m.kernel_size, m.stride, m.padding) for m in paper_net.features
               if isinstance(m, nn.Conv2d)]
    assert kernels == [(96, (11, 11), (4, 4), (0, 0)), (256, (5, 5), (1, 1), (2, 2)),
                       (384, (3, 3), (1, 1), (1, 1)), (384, (3, 3), (1, 1), (1, 1)),
                       (256, (3, 3), (1, 1), (1, 1))]
    fcs = [(m.in_features, m.out_features) for m in paper_net.classifier if isinstance(m, nn.Linear)]
    assert fcs == [(9216, 4096), (4096, 4096), (4096, 1000)]


def test_conv_and_linear_modules_appear_in_layer_order(paper_net):
    names = [n.rsplit(".", 1)[-1] for n, m in paper_net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert names == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]


def test_conv2_is_connected_only_within_its_tower_and_conv3_to_both(paper_net):
    torch.manual_seed(1)
    f = paper_net.features
    with torch.no_grad():
        pooled1 = f[:4](torch.randn(1, 3, 227, 227) * 50)   # conv1, act1, norm1, pool1
        changed = pooled1.clone()
        changed[:, :48] += torch.rand_like(changed[:, :48]) * 10  # tower A's maps only
        before_conv2, after_conv2 = f.conv2(pooled1), f.conv2(changed)
        # tower B's conv2 outputs (and its normalised, pooled maps) stay the same
        assert torch.equal(before_conv2[:, 128:], after_conv2[:, 128:])
        assert not torch.equal(before_conv2[:, :128], after_conv2[:, :128])
        before_conv3, after_conv3 = f[4:9](pooled1), f[4:9](changed)
        assert torch.equal(f[4:8](pooled1)[:, 128:], f[4:8](changed)[:, 128:])
    # both towers' conv3 outputs change: conv3 sees all maps of layer 2
    assert not torch.equal(before_conv3[:, :192], after_conv3[:, :192])
    assert not torch.equal(before_conv3[:, 192:], after_conv3[:, 192:])


def test_weights_are_gaussian_with_std_0_01_and_biases_follow_section_5():
    torch.manual_seed(0)
    net = AlexNet(fc_width=256)  # narrow: the rule does not depend on the width
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    for name, m in list(net.features.named_children()) + list(net.classifier.named_children()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach()
            assert abs(w.std().item() - 0.01) < 0.01 * (0.1 if w.numel() > 10_000 else 0.3), name
            assert abs(w.mean().item()) < 0.002, name
            assert torch.all(m.bias == (1.0 if name in ones else 0.0)), name


def test_lrn_follows_conv1_and_conv2_with_the_papers_constants_per_tower(paper_net):
    names = list(paper_net.features._modules)
    norms = [(n, m) for n, m in paper_net.features.named_children() if isinstance(m, LocalResponseNorm)]
    assert [n for n, _ in norms] == ["norm1", "norm2"]
    assert names.index("norm1") == names.index("act1") + 1 and names.index("norm2") == names.index("act2") + 1
    for _, m in norms:
        assert (m.k, m.size, m.alpha, m.beta, m.scaling, m.groups) == (2.0, 5, 1e-4, 0.75, "paper", 2)
    pools = [(n, m.kernel_size, m.stride) for n, m in paper_net.features.named_children() if isinstance(m, nn.MaxPool2d)]
    assert pools == [("pool1", 3, 2), ("pool2", 3, 2), ("pool5", 3, 2)]
    assert [m.p for m in paper_net.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]


def test_fc8_has_no_relu_and_num_classes_is_configurable():
    net = AlexNet(num_classes=10, fc_width=64)
    assert list(net.classifier._modules)[-1] == "fc8" and net.classifier.fc8.out_features == 10


def test_224_with_the_authors_ceiling_rule_gives_55x55_in_conv1():
    net = AlexNet(input_size=224, conv_rounding="ceil", fc_width=64).eval()
    with torch.no_grad():
        maps = feature_maps(net, torch.zeros(1, 3, 224, 224))
    assert tuple(maps["conv1"].shape[1:]) == (96, 55, 55)
    assert tuple(maps["pool5"].shape[1:]) == (256, 6, 6)
    # as if padded by 3 rows and columns at the bottom and right
    x = torch.randn(1, 3, 224, 224)
    padded = nn.functional.pad(x, (0, 3, 0, 3))
    torch.testing.assert_close(net.features.conv1(net.features.pad1(x)), nn.functional.conv2d(
        padded, net.features.conv1.weight, net.features.conv1.bias, stride=4))


def test_input_size_sets_the_fully_connected_input():
    net = AlexNet(input_size=224, fc_width=64)  # floor arithmetic: 54x54 conv1 ... 5x5x256 into fc6
    assert net.feature_shape == (256, 5, 5) and net.classifier.fc6.in_features == 6400


def _layers(net):
    return {n: m for n, m in net.named_modules() if n and not isinstance(m, nn.Sequential)}


def _same_except(a, b, changed):
    la, lb = _layers(a), _layers(b)
    for name in set(la) | set(lb):
        if name.rsplit(".", 1)[-1] in changed:
            continue
        assert name in la and name in lb, name
        assert repr(la[name]) == repr(lb[name]), name


@pytest.mark.parametrize("option, changed", [
    ({"activation": "tanh"}, {f"act{i}" for i in (1, 2, 3, 4, 5, 6, 7)}),
    ({"lrn": False}, {"norm1", "norm2"}),
    ({"pooling": "non-overlapping"}, {"pool1", "pool2", "pool5"}),
    ({"dropout": 0.0}, {"drop6", "drop7"}),
    ({"lrn_scaling": "code"}, {"norm1", "norm2"}),
])
def test_each_ablation_option_changes_what_it_says_and_nothing_else(option, changed):
    paper, variant = AlexNet(fc_width=64), AlexNet(fc_width=64, **option)
    _same_except(paper, variant, changed)
    for name in changed:
        la = _layers(paper).get(f"features.{name}") or _layers(paper).get(f"classifier.{name}")
        lb = _layers(variant).get(f"features.{name}") or _layers(variant).get(f"classifier.{name}")
        assert repr(la) != repr(lb), name
    assert variant(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)


def test_tanh_and_non_overlapping_pooling_do_what_they_say():
    net = AlexNet(activation="tanh", pooling="non-overlapping", fc_width=64)
    assert all(isinstance(m, nn.Tanh) for n, m in net.named_modules() if n.rsplit(".", 1)[-1].startswith("act"))
    assert all((m.kernel_size, m.stride) == (2, 2) for m in net.modules() if isinstance(m, nn.MaxPool2d))
    assert net.feature_shape == (256, 6, 6)  # 55 -> 27 -> 13 -> 6 with z = s = 2 as well


@pytest.mark.parametrize("layer, in_next", [("conv3", ("conv4", 256)), ("conv4", ("conv5", 384)),
                                            ("conv5", ("fc6", 384 * 36))])
def test_dropping_a_middle_layer_removes_it_and_feeds_the_next_the_layer_before(layer, in_next):
    net = AlexNet(drop_layer=layer, fc_width=64)
    layers = _layers(net)
    assert f"features.{layer}" not in layers
    nxt = layers.get(f"features.{in_next[0]}") or layers.get(f"classifier.{in_next[0]}")
    assert getattr(nxt, "in_channels", getattr(nxt, "in_features", None)) == in_next[1]
    kept = {"conv1", "conv2", "conv3", "conv4", "conv5"} - {layer, in_next[0]}
    for name in kept:
        assert repr(layers[f"features.{name}"]) == repr(_layers(AlexNet(fc_width=64))[f"features.{name}"])
    assert net(torch.zeros(1, 3, 227, 227)).shape == (1, 1000)


def test_bad_options_are_refused_with_their_name():
    for kwargs, message in [({"activation": "sigmoid"}, "activation"), ({"pooling": "avg"}, "pooling"),
                            ({"drop_layer": "conv1"}, "drop_layer"), ({"towers": 3}, "towers"),
                            ({"conv_rounding": "round"}, "conv_rounding"), ({"input_size": 40}, "input_size")]:
        with pytest.raises(ValueError, match=message):
            AlexNet(**kwargs)


def test_one_tower_net_has_half_the_kernels_in_conv1_to_conv4():
    net = build_model("alexnet-onetower", fc_width=64)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [48, 128, 192, 192, 256]
    assert all(m.groups == 1 for m in convs)
    assert all(m.groups == 1 for m in net.modules() if isinstance(m, LocalResponseNorm))


def test_two_device_layout_computes_the_same_function_and_gradients():
    torch.manual_seed(0)
    one = AlexNet(num_classes=20, fc_width=256).eval()  # narrow fc layers: the wiring is the point
    two = TwoDeviceAlexNet.from_one_device(one, ("cpu", "cpu")).eval()
    x = torch.randn(2, 3, 227, 227) * 40
    torch.testing.assert_close(two(x), one(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(two.fc7_features(x), one.fc7_features(x), rtol=1e-5, atol=1e-5)
    one(x).square().sum().backward()
    two(x).square().sum().backward()
    grads_two = two_to_one_device_state({n: p.grad for n, p in two.named_parameters()})
    for name, p in one.named_parameters():
        torch.testing.assert_close(grads_two[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_weights_convert_losslessly_between_the_layouts():
    state = AlexNet(num_classes=7, fc_width=64).state_dict()
    back = two_to_one_device_state(one_to_two_device_state(state))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], v) for k, v in state.items())
    two = TwoDeviceAlexNet.from_one_device(AlexNet(num_classes=7, fc_width=64), ("cpu", "cpu"))
    two.load_state_dict(one_to_two_device_state(state))
    assert all(torch.equal(two.one_device_state_dict()[k], v) for k, v in state.items())


def test_two_device_towers_move_activations_only_into_conv3_and_the_classifier():
    two = TwoDeviceAlexNet.from_one_device(AlexNet(fc_width=64), ("cpu", "cpu"))
    assert two.crossing == {"conv3"}
    t = two.towers[0]
    assert [m.in_channels for m in t.features if isinstance(m, nn.Conv2d)] == [3, 48, 256, 192, 192]
    assert t.fc6.in_features == 9216 and t.fc6.out_features == 32  # each tower: half of fc6


def test_fc_bias_sets_only_the_initial_biases_of_fc6_and_fc7():
    net = AlexNet(fc_width=64, fc_bias=0.1)
    assert torch.all(net.classifier.fc6.bias == 0.1) and torch.all(net.classifier.fc7.bias == 0.1)
    assert torch.all(net.features.conv2.bias == 1.0) and torch.all(net.classifier.fc8.bias == 0.0)


def test_an_input_of_another_size_says_what_size_the_network_takes():
    from tests.kit import tiny_alexnet

    net = tiny_alexnet(3)  # input_size 67
    with pytest.raises(ValueError, match=r"takes \[N, 3, 67, 67\] images \(input_size=67\), not \[1, 3, 99, 99\]; "
                       r"build it with input_size=99"):
        net(torch.zeros(1, 3, 99, 99))
    with pytest.raises(ValueError, match="input_size=67"):
        net.fc7_features(torch.zeros(1, 3, 131, 131))


REPO = Path(__file__).resolve().parents[1]


def test_torch_hub_loads_each_architecture_and_a_model_file_from_a_clone(tmp_path):
    from alexnet import save_model
    from alexnet.errors import UserError
    from tests.kit import tiny_alexnet

    def hub(entry, **kwargs):
        return torch.hub.load(str(REPO), entry, source="local", **kwargs)

    net = hub("alexnet", num_classes=10, fc_width=64)
    assert (net.arch, net.options["num_classes"], net.options["fc_width"]) == ("alexnet", 10, 64)
    with pytest.raises(ValueError, match=r"takes \[N, 3, 227, 227\] images"):  # torchvision's 224 habit
        net(torch.zeros(1, 3, 224, 224))
    assert hub("alexnet_onetower", fc_width=64).options["towers"] == 1
    assert hub("alexnet_owt", num_classes=5).arch == "alexnet-owt"
    saved = tiny_alexnet(3)
    save_model(saved, tmp_path / "m.pt", class_names=["a", "b", "c"])
    loaded = hub("alexnet", weights=str(tmp_path / "m.pt"))
    assert loaded.class_names == ["a", "b", "c"] and not loaded.training
    x = torch.randn(2, 3, 67, 67)
    with torch.no_grad():
        assert torch.equal(loaded(x), saved(x))
    with pytest.raises(UserError, match="holds alexnet, not alexnet-owt; load it with the entry point 'alexnet'"):
        hub("alexnet_owt", weights=str(tmp_path / "m.pt"))
    for torchvision_spelling in ({"pretrained": True}, {"weights": "DEFAULT"}):
        with pytest.raises(UserError, match=r"no weights are downloaded here: .*alexnet convert torchvision"):
            hub("alexnet", **torchvision_spelling)
    with pytest.raises(UserError, match=r"option fc_width=1000000000: expected an integer \(from 1 to 16,384\)"):
        hub("alexnet", fc_width=10**9)
