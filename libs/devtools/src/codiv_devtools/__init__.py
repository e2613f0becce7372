"""Run the whole Codiv system locally: emulator and services as processes."""
