"""`selfie export`: a pretrained P as files other code loads without this repository (a
torchvision ResNet-50 state dict, or an ONNX graph)."""
