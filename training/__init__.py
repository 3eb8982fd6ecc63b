"""Training side of siamface: data synthesis and loaders, the Siamese model, losses, QAT."""
from siamface.edge_runtime.terminal import tensorflow_env

tensorflow_env()  # before TensorFlow is imported: tf-keras (Keras 2) for tensorflow-model-optimization
