"""`cyclegan synth OUT`: an unpaired dataset with a known answer, for the demo and the tests.

Each task draws scenes in pairs, an A image and the B image it must translate to; domain A keeps the A image of
its own draws and domain B the B image of others, so nothing is paired. For test A it also writes the ground truth,
`testA_truth/NAME`: the B image of test A's NAME. Test images are PNG (lossless, so the truth is exact); train
images alternate JPEG and PNG.

colour (the default): procedural scenes (a gradient, shapes, stripes) in warm colours, red high, green middle, blue
  low; B is the same scene under a fixed channel rotation (R, G, B) -> (B, R, G), so green is high, blue middle and
  red low there. The rotation is invertible and a 1x1 convolution can learn it, and the two palettes do not overlap,
  so the identity loss never asks a generator to keep colours of the wrong domain. It proves that training works,
  not that a generator learns spatial structure: a per-pixel colour map solves it.
discs: white dots of radius 2 px on one dark background; B has a white disc of radius 6 px in each dot's place.
  Both domains hold the same two colours, so no colour map helps: a background pixel next to a dot must turn
  white and one farther away must not, a function of its neighbourhood. Growing a dot and shrinking a disc are
  both local (a 13 px window) and invertible, and both domains' images are fixed points of their own direction,
  which the identity loss asks for. The radii are in pixels: train it where test images keep their scale
  (`cyclegan train --preprocess crop`, whose test time translates images as stored).
"""
import dataclasses
import os

import numpy as np
from PIL import Image, ImageDraw

from preprocessing.flags import UsageError, add_config_flags, config_field, config_from_flags, job_parser
from preprocessing.schema import TRUTH_FOLDER



@dataclasses.dataclass(frozen=True)
class SynthConfig:
    train: int = config_field(240, "images per domain in trainA/ and trainB/")
    test: int = config_field(24, "images per domain in testA/ and testB/")
    size: int = config_field(96, "nominal side in px; each image's width and height vary within +-12%")
    seed: int = config_field(0, "random seed: the same seed writes the same files")
    task: str = config_field("colour", "what B is of A: colour (a channel rotation) or discs (each dot grown into a "
                             "disc: spatial; see `cyclegan synth --help`)", choices=("colour", "discs"))


def a_to_b(rgb: np.ndarray) -> np.ndarray:
    """The fixed A -> B transform: (R, G, B) -> (B, R, G)."""
    return rgb[..., [2, 0, 1]]


def warm_colour(rng):
    """A colour of palette A: red leads, green is in the middle, blue is low.

    Each channel has its own range so that only the true rotation turns A's colour distribution into B's: were
    green and blue drawn alike, swapping them would fit B's distribution just as well, and a CycleGAN could learn
    either map, which the ground truth would then score as wrong.
    """
    red = rng.uniform(0.55, 1.0)
    green, blue = red * rng.uniform(0.3, 0.6), red * rng.uniform(0.0, 0.2)
    return tuple(int(255 * c) for c in (red, green, blue))


def scene(rng, width, height) -> np.ndarray:
    """One domain-A scene as uint8 HxWx3."""
    top, bottom = np.array(warm_colour(rng), float), np.array(warm_colour(rng), float)
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    img = Image.fromarray(np.broadcast_to((1 - t) * top + t * bottom, (height, width, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(3, 7)):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(width // 8, width // 2), rng.integers(height // 8, height // 2)
        box = [x0 - w // 2, y0 - h // 2, x0 + w // 2, y0 + h // 2]
        colour = warm_colour(rng)
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), (x0, box[1])], fill=colour)
    pixels = np.asarray(img, float)
    # Stripes: a texture that darkens all channels alike, so red stays the strongest.
    angle, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
    yy, xx = np.mgrid[0:height, 0:width]
    stripes = 0.85 + 0.15 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    return np.clip(pixels * stripes[..., None], 0, 255).astype(np.uint8)


def colour_pair(rng, width, height):
    pixels = scene(rng, width, height)
    return pixels, a_to_b(pixels)


DOT, DISC = 2, 6  # radii in px of the discs task's A and B shapes
SPACING = 2 * DISC + 4  # between centres: B's discs never touch, so each of A's dots has one disc and back


# One dot colour on one background. Instance normalisation (in every generator layer) takes out each image's mean and
# scale per channel, so a net sees colours only relative to the rest of its image: dots of many colours come out
# in the wrong ones, which would hide what the task measures, the shapes.
BACKGROUND, DOT_COLOUR = (24, 28, 40), (240, 236, 220)


def discs_pair(rng, width, height):
    a, b = (np.broadcast_to(np.array(BACKGROUND, np.uint8), (height, width, 3)).copy() for _ in range(2))
    yy, xx = np.mgrid[0:height, 0:width]
    centres = []
    for _ in range(400):  # random sequential placement: about two thirds of the densest packing at SPACING
        y, x = rng.integers(DOT, height - DOT), rng.integers(DOT, width - DOT)
        if all((y - cy) ** 2 + (x - cx) ** 2 >= SPACING ** 2 for cy, cx in centres):
            centres.append((y, x))
            distance = (yy - y) ** 2 + (xx - x) ** 2
            a[distance <= (DOT + 0.5) ** 2] = DOT_COLOUR
            b[distance <= (DISC + 0.5) ** 2] = DOT_COLOUR
    return a, b


TASKS = {"colour": colour_pair, "discs": discs_pair}


def write(out, config: SynthConfig):
    """Write the dataset; returns {folder: number of images}."""
    counts = {}
    for split, n in (("train", config.train), ("test", config.test)):
        for domain in ("A", "B"):
            # Independent streams per split and domain: A and B never share a scene, so nothing is paired.
            rng = np.random.default_rng([config.seed, split == "test", domain == "B"])
            folder = os.path.join(out, f"{split}{domain}")
            os.makedirs(folder, exist_ok=True)
            if split == "test" and domain == "A":
                os.makedirs(os.path.join(out, TRUTH_FOLDER), exist_ok=True)
            for i in range(n):
                w, h = (int(config.size * rng.uniform(0.88, 1.12)) for _ in range(2))
                a, b = TASKS[config.task](rng, w, h)
                ext = "png" if split == "test" or i % 2 else "jpg"
                name = f"{split}{domain}_{i:05d}.{ext}"
                Image.fromarray(b if domain == "B" else a).save(os.path.join(folder, name))
                if split == "test" and domain == "A":
                    Image.fromarray(b).save(os.path.join(out, TRUTH_FOLDER, name))
            counts[f"{split}{domain}"] = n
    return counts


def main(argv, prog="cyclegan synth"):
    parser = job_parser(prog, __doc__)
    parser.add_argument("out", help="folder to write trainA/ trainB/ testA/ testB/ and testA_truth/ into")
    add_config_flags(parser, SynthConfig)
    args = parser.parse_args(argv)
    config = config_from_flags(SynthConfig(), args)
    if config.train < 1 or config.test < 1 or config.size < 32:
        raise UsageError("--train and --test must be at least 1 and --size at least 32")
    counts = write(args.out, config)
    print(f"synth: wrote {', '.join(f'{n} {name}' for name, n in counts.items())} and {TRUTH_FOLDER}/ "
          f"under {args.out}")
    return 0
