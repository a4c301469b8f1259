"""The training extension schema (train.fbs) and its generated Python code.

``train_generated`` is produced by ``scripts/gen_schema.sh`` (flatc --python); do not edit it.
"""
from . import train_generated as tfmt  # noqa: F401

#: Name of the TFLite metadata entry holding the training extension.
METADATA_NAME = "tflm_train.train"
FILE_IDENTIFIER = b"TFMT"
VERSION = (2, 2)
