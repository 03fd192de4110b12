"""The seed ranges. They never overlap: training draws below TRAIN_SEED_END, eval snapshots, the
pick among the finalists and the confirmation of a target (all part of training: they pick best.pt
and decide when to stop) use blocks of their own, and the final evaluation (and wm-play by
default) the last one. No heavy imports here: wm-play's argument parser needs FINAL_SEED_START
before its Ctrl-C guard is in place."""
TRAIN_SEED_END = 1_000_000_000
SNAPSHOT_SEED_START = 1_000_000_000
PICK_SEED_START = 1_250_000_000
CONFIRM_SEED_START = 1_500_000_000
FINAL_SEED_START = 2_000_000_000
