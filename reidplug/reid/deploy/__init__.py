"""Using a trained model: features of images (extract), rank lists (query), ONNX and TorchScript files (export)."""
