"""mner_hf: HuggingFace-native multimodal named entity recognition for posts with several images."""

__version__ = "0.1.0"
