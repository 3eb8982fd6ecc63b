"""Export: TFLite variants of a trained encoder, a self-describing bundle, and a parity check."""
from siamface.edge_runtime.terminal import tensorflow_env

tensorflow_env()
