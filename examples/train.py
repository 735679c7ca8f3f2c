#!/usr/bin/env python
"""Train / evaluate an MNER model from a YAML config: identical to ``mner-hf train``.

    python examples/train.py --config examples/configs/sample_tpm_mi.yaml
    accelerate launch examples/train.py --config examples/configs/tpm_mi_twitter2017.yaml \
        --set data.data_dir=../shared/data/twitter2017
    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/train.py --config ...

See examples/README.md for multi-GPU, multi-node, DeepSpeed and FSDP commands.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mner_hf.training.cli import add_train_arguments, run_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_train(args)


if __name__ == "__main__":
    sys.exit(main())
