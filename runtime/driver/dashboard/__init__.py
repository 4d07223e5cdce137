"""The web dashboard of a hub, served beside the HTTP API (``durable serve``)."""

from .views import ROOT

__all__ = ["ROOT"]
