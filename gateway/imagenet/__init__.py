"""The ImageNet pieces: what turns an upload into the pool's input, and logits into named classes.

- ``decode``: an upload (JPEG, PNG, WebP) to the normalised ``[3, 224, 224]`` tensor torchvision's
  preprocessing gives, with the limits that keep a hostile image from exhausting the gateway;
- ``labels``: the 1000 class names, from a file or torchvision;
- ``predictions``: logits to the top-k classes.

Imports: numpy, Pillow, ``gateway.arrays`` and ``gateway.errors``. The ``image`` model inside Triton
(``gateway.modelzoo.triton_image_model``) decodes with ``decode`` too, so both paths give the same pixels.
"""
