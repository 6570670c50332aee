"""The reference's ResNet generator in PyTorch, written here from the paper's architecture and the reference's
layer order (trainer/model/reference_weights.py lists it), so that `cyclegan import` is checked against the
network whose weights it reads. Used by tests/test_import.py and tests/make_pth_fixture.py; needs PyTorch."""
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim))

    def forward(self, x):
        return x + self.conv_block(x)


class Generator(nn.Module):
    """c7s1-ngf, d2ngf, d4ngf, n_blocks x R4ngf, u2ngf, ungf, c7s1-3, tanh; InstanceNorm without affine."""

    def __init__(self, ngf=64, n_blocks=9, channels=3):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1),
                       nn.InstanceNorm2d(ngf * mult * 2), nn.ReLU(True)]
        layers += [Block(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def random_generator(ngf, n_blocks, seed):
    """A Generator with random weights, biases included (PyTorch's default init leaves none at zero)."""
    torch.manual_seed(seed)
    return Generator(ngf, n_blocks).eval()


def translate(generator, images):
    """NHWC float32 in [-1, 1] -> the generator's NHWC output, as NumPy."""
    with torch.no_grad():
        return generator(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
