"""worldmodels: a World Models (Ha & Schmidhuber 2018) trainer on Gymnasium and ALE.

Importing the package registers its Gymnasium ids (e.g. worldmodels/CarRacing-v3).
"""
__version__ = "0.1.0"


def _register() -> None:
    try:
        from .envs.carracing import register
    except ImportError:  # pragma: no cover - optional module missing
        return
    register()


_register()
