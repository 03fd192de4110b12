"""Pure torch models: V (ConvVAE or KeypointVAE), M (MDN-RNN), C (controller). No I/O here."""
from .controller import Controller
from .mdnrnn import MDNRNN, gmm_nll
from .vae import ConvVAE, KeypointVAE, build_vae, vae_loss

__all__ = ["ConvVAE", "KeypointVAE", "build_vae", "vae_loss", "MDNRNN", "gmm_nll", "Controller"]
