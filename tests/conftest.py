"""Shared pytest set-up: never reach for a model hub during tests."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
