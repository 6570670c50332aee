"""What both sides share: pure image and TFRecord-schema functions (the Beam job writes, the trainer reads),
and the config-to-flags and error helpers every job uses."""
