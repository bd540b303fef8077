"""The pipeline components (ModelMixin + ConfigMixin): the frozen target network, the parameter autoencoder and the
latent denoiser."""
