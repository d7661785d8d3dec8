"""The segmentation-models-pytorch encoders a U-Net may use (all build offline with weights=None).

Names only, no torch: the search driver validates a config's encoders and masks with it.
"""

ENCODERS = ("mobilenet_v2", "resnet18", "efficientnet-b0")
