"""The disentangle stage: contrastive latent-code extractor (paper 000 sec. 3.3), mouth/eye
landmark autoencoder (paper 001 sec. 3.2) and linear-probe measurement of disentanglement."""
