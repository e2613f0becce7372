"""Pinterest API v5 async client and emulator."""
