"""The ResNet pool and the Triton model-repository builder."""
