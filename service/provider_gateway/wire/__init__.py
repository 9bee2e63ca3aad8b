"""Wire decoders shared by the HTTP adapters: pure functions of bytes, no I/O."""
