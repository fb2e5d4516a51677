"""Pytest fixtures for the Clarifai emulator (filled in by the emulator work)."""
