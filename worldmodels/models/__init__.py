"""Pure torch models: V (ConvVAE), M (MDN-RNN), C (linear controller). No I/O here."""
from .controller import Controller
from .mdnrnn import MDNRNN, gmm_nll
from .vae import ConvVAE, vae_loss

__all__ = ["ConvVAE", "vae_loss", "MDNRNN", "gmm_nll", "Controller"]
