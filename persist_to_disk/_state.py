"""The process-wide settings object, in a module of its own to avoid import cycles."""

from .config import Config

config = Config()
