"""The model pool as built artefacts: the ResNets and the Triton model-repository builder.

- ``resnet``: ResNet18-152 written in torch (torchvision's parameter counts, exactly);
- ``build``: export them to ONNX with Triton configs (GPU, CPU and python-gpu flavours), the labels and
  the pool file; ImageNet weights where they can be fetched, random weights offline, and which one
  was built is recorded;
- ``triton_python_model``: the python-backend model the CPU flavour runs (onnxruntime inside Triton).

Imports: torch and onnx (the ``build`` extra), ``gateway.pool``, ``gateway.imagenet.labels``, ``gateway.errors``.
"""
