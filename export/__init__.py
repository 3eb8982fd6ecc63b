"""Export: TFLite variants of a trained encoder, a self-describing bundle, and a parity check."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
