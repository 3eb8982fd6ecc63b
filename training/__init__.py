"""Training side of siamface: data synthesis and loaders, the Siamese model, losses, QAT."""
import os

# tensorflow-model-optimization needs Keras 2 (tf-keras); set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
