"""PreprocessConfig: everything `cyclegan preprocess` can be told, one flag per field."""
import dataclasses

from preprocessing.flags import config_field
from preprocessing.images import ImageOptions


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    input: str = config_field("", "dataset root holding trainA/ trainB/ testA/ testB/ (local path or gs://)")
    output: str = config_field("", "where the shards, manifest.json and rejected.jsonl go (local path or gs://)")
    glob: tuple[str, ...] = config_field((), "explicit files for one split and domain instead of --input, "
                                         "as SPLITDOMAIN=PATTERN, e.g. trainA=gs://bucket/horses/**/*.jpg")
    tfds: str = config_field("", "a TensorFlow Datasets name to read instead of folders, "
                             "e.g. cycle_gan/horse2zebra (splits trainA, trainB, testA, testB)")
    tfds_data_dir: str = config_field("", "TFDS data directory (default: TFDS's own, ~/tensorflow_datasets)")
    tfds_download: bool = config_field(False, "let TFDS download and prepare the dataset first")
    # the image options' defaults are preprocessing.images.ImageOptions's own
    max_size: int = config_field(ImageOptions.max_size, "shorter side of the stored images at most this many px "
                                 "(never upscaled)", minimum=1)
    min_side: int = config_field(ImageOptions.min_side, "reject images whose shorter side is below this many px",
                                 minimum=1)
    max_pixels: int = config_field(ImageOptions.max_pixels, "reject images with more pixels than this "
                                   "(decompression bombs)", minimum=1)
    image_format: str = config_field(ImageOptions.image_format, "encoding of the stored images",
                                     choices=("jpeg", "png"))
    jpeg_quality: int = config_field(ImageOptions.jpeg_quality, "JPEG quality of the stored images", minimum=1,
                                     maximum=100)
    num_shards: int = config_field(0, "shards per split and domain; 0 derives it from --shard_size_mb", minimum=0)
    shard_size_mb: int = config_field(128, "target shard size when --num_shards is 0", minimum=1)
    min_train_shards: int = config_field(16, "never fewer shards for a train split (parallel readers), "
                                         "unless there are fewer images", minimum=1)
    min_test_shards: int = config_field(1, "never fewer shards for a test split, unless there are fewer images",
                                        minimum=1)
    overwrite: bool = config_field(False, "write into an --output that already holds a manifest.json")
    lease_timeout: int = config_field(120, "an --output folder whose job's heartbeat stopped this many seconds ago "
                                      "may be taken over by another job", minimum=10)
    wait: bool = config_field(True, "with --runner DataflowRunner, wait for the job to end and print its summary "
                              "(--no-wait: print the job's id and link, and exit)")

    def image_options(self) -> ImageOptions:
        return ImageOptions(max_size=self.max_size, min_side=self.min_side, max_pixels=self.max_pixels,
                            image_format=self.image_format, jpeg_quality=self.jpeg_quality)

    def shard_count(self, split, records, total_bytes):
        """Shards for one split and domain: the flag, or enough for the target size and the minimum; none empty."""
        wanted = self.num_shards or max(-(-total_bytes // (self.shard_size_mb << 20)),
                                        self.min_train_shards if split == "train" else self.min_test_shards)
        return max(1, min(wanted, records))
