"""A local stand-in for WeChat's server API (tokens, template/custom/subscription sends,
menu, QR codes, delivery callbacks) for tests and the demo. See `emulator.app`."""

from emulator.app import create_emulator, make_emulator_server

__all__ = ["create_emulator", "make_emulator_server"]
