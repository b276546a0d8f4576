"""The VAE core: model, loss in nats, data, training loop, sampling and checkpoints.

Nothing in this package imports Ray, W&B or Gradio: `search/` and `serve/` are thin layers on top.

Two widths name a VAE's shape (the words come from the article the project grew out of):

* ``latent_width``: the size of the hidden layer on each side of the bottleneck
  (pixels -> latent_width -> ... -> latent_width -> pixels).
* ``reparam_width``: the dimension of the sampled code z (the reparameterised bottleneck).

``depth`` (1..3, default 1) is the number of such hidden layers on each side; depth 1 is the article's
LinearVAE; ``conv_channels`` > 0 puts a convolutional stem in front (``ConvVAE``). ``vae.iwae`` gives the
importance-weighted bound on log p(x), tighter than the ELBO.
"""

from vae.config import ModelConfig, TrainConfig
from vae.model import VAE, ConvVAE, LinearVAE, build_model

__all__ = ["VAE", "ConvVAE", "LinearVAE", "ModelConfig", "TrainConfig", "build_model"]
