"""Pure image and TFRecord-schema functions shared by the Beam job and the trainer."""
