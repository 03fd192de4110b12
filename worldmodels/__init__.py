"""worldmodels: a World Models (Ha & Schmidhuber 2018) trainer on Gymnasium and ALE.

Importing the package registers its Gymnasium ids (e.g. worldmodels/CarRacing-v3).
"""
__version__ = "0.1.0"


def _register() -> None:
    from .envs import register_carracing  # by name: no pygame, Box2D or cv2 imported here

    register_carracing()


_register()
