"""State: the store interface and its transaction (`store`), the memory and RocksDB stores,
and the one module that knows how state keys are laid out in bytes (`layout`)."""
