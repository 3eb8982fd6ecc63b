"""Export: TFLite variants of a trained encoder, a self-describing bundle, and a parity check."""
from edge_runtime.terminal import tensorflow_env

tensorflow_env()
