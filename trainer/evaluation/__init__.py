"""How well a pair of translators does on a raw dataset's test images: pixel errors, PSNR, FID and KID."""
