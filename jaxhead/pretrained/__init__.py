"""Published pre-trained networks (VGG16) and the readers of their weight files."""
